"""End-to-end tests: a real voxlab process driven by real peers (sipp, tests.peers.sipua)."""
