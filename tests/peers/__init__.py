"""Independent test peers (SIP UAC + RTP) and helpers to run the voxlab server."""
