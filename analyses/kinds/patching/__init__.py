"""The patching engine (`engine.py`: batched, resumed activation patching, with its
contract) and the direct-path engine built on it (`paths.py`)."""
