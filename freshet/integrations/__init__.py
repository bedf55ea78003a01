"""Retrievers over :class:`~freshet.client.SearchClient` for the frameworks people already use.

* :mod:`freshet.integrations.langchain`: ``FreshetRetriever``, a langchain-core ``BaseRetriever``
  (``pip install 'freshet[langchain]'``).
* :mod:`freshet.integrations.llamaindex`: ``FreshetRetriever``, a llama-index-core ``BaseRetriever``
  (``pip install 'freshet[llamaindex]'``).

Each framework is imported only by its own module; this package imports neither.
"""
