"""The domain of freshet (chunking, change planning, search) and its adapters.

Pure functions carry the logic (``chunking``, ``planning``); each external system sits behind a
small protocol with one adapter: ``embedding`` (the model), ``store`` (Weaviate).
"""
