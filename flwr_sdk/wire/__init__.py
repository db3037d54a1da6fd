"""Conversions between generated wire classes and the SDK's data model, one module per
Flower wire line. Every wire quirk of a line lives in its module and nowhere else."""
