"""voxlab: a programmable telephony server and lab."""

__version__ = "0.1.0"
