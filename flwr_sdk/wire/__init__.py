"""Conversions between generated wire classes and the SDK's data model.

One module per Flower wire line; every wire quirk of a line lives in its module and
nowhere else.
"""
