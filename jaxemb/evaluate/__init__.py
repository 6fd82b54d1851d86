"""jaxemb.evaluate: turn an `embed_fn(texts) -> [N, D]` into named numbers.

Evaluators and tasks are looked up by string (`get_evaluator`, `get_task`); importing this
package registers the built-in evaluators "retrieval", "sts" and "rankme".
"""

from jaxemb.evaluate.rank import mean_cosine_similarity, rankme
from jaxemb.evaluate.registry import (
    get_evaluator,
    get_task,
    list_evaluators,
    list_tasks,
    prefix_metrics,
    register,
    register_task,
)
from jaxemb.evaluate.retrieval import evaluate_retrieval, exact_top_k, retrieval_metrics
from jaxemb.evaluate.sts import average_ranks, cosine_similarity, sts_metrics

__all__ = [
    "average_ranks",
    "cosine_similarity",
    "evaluate_retrieval",
    "exact_top_k",
    "get_evaluator",
    "get_task",
    "list_evaluators",
    "list_tasks",
    "mean_cosine_similarity",
    "prefix_metrics",
    "rankme",
    "register",
    "register_task",
    "retrieval_metrics",
    "sts_metrics",
]
