"""HJ 212 at the gateway (issue 16): a receiver for dataloggers that push frames (``receiver.py``) and an uplink that
makes the agent a datalogger for an environmental platform (``uplink.py``, ``feed.py``, ``commands.py``). The
protocol itself is ``schemas/hj212`` (codec and receiving session), shared with the centre's receiver."""
