"""Data: dataset sources and the torch Dataset (datasets.py), robust decoding (decode.py), named
preprocess modes (transforms.py) and procedural demo scenes (demo.py and its helpers)."""
