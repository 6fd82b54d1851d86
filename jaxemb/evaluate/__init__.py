"""jaxemb.evaluate: turn an `embed_fn(texts) -> [N, D]` into named numbers.

Evaluators are looked up by string (`get_evaluator`) in the table of
`jaxemb.evaluate.registry`; evaluation tasks (data + evaluator) are listed in `jaxemb.tasks`.
"""

from jaxemb.evaluate.rank import mean_cosine_similarity, rankme
from jaxemb.evaluate.registry import (
    Task,
    get_evaluator,
    list_evaluators,
    prefix_metrics,
    register,
)
from jaxemb.evaluate.retrieval import evaluate_retrieval, exact_top_k, retrieval_metrics
from jaxemb.evaluate.sts import average_ranks, cosine_similarity, sts_metrics

__all__ = [
    "Task",
    "average_ranks",
    "cosine_similarity",
    "evaluate_retrieval",
    "exact_top_k",
    "get_evaluator",
    "list_evaluators",
    "mean_cosine_similarity",
    "prefix_metrics",
    "rankme",
    "register",
    "retrieval_metrics",
    "sts_metrics",
]
