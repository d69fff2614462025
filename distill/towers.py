"""Two towers: separate query and passage encoders, saved behind sentence-transformers' Router.

A shared encoder must place a three-word query and a 200-word abstract with one set of weights; two towers
(asymmetric dual encoders) let each side specialize, at twice the parameters. Both start as copies of the
base model. The model is one SentenceTransformer whose first module is a Router with a "query" and a
"document" route, so `SentenceTransformer(path)` loads the saved folder and `encode_query` /
`encode_document` pick the tower; training calls the same forward with `task=`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def split_towers(model: "SentenceTransformer") -> "SentenceTransformer":
    """A two-tower model from a shared one (Transformer, Pooling, ..., Normalize): the modules before the
    final Normalize become both routes, the query route a copy; prompts and lengths carry over."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    modules = list(model)
    body, tail = modules[:-1], modules[-1:]
    router = Router.for_query_document(query_modules=[copy.deepcopy(m) for m in body], document_modules=body)
    towers = SentenceTransformer(modules=[router, *tail], device=str(model.device))
    towers.prompts = dict(model.prompts)
    towers.default_prompt_name = None
    return towers


def freeze_document_tower(model: "SentenceTransformer") -> None:
    """Train the query tower only: passages stay where the base model put them, so what the base knows about
    the corpus is kept whole, the base's passage embeddings (relabel's cache) stay valid, and a training step
    costs one query pass instead of query + passage passes with their backward."""
    for param in model[0].sub_modules["document"].parameters():
        param.requires_grad_(False)
