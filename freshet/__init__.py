"""freshet: a streaming semantic indexer (Kafka change events in, a fresh Weaviate index out).

The package ``freshet`` holds the process-level pieces shared by every entry point: the one
settings object, the error root, logging set-up, the CLI and the Kafka clients for producers and
searchers. The domain lives in ``workers``, the topic contracts in ``schemas``, the Faust wiring in
``streams`` and everything about running the local stack in ``ops``.
"""

__version__ = "0.1.0"
