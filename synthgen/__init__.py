"""synthgen: synthetic training data for retrieval, Gecko style (generate queries, relabel them with an LLM)."""

__version__ = "0.1.0"
