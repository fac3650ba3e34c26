"""The LLM teacher: load it (``models``), read its hidden states (``extract``), keep them on disk (``cache``).

Owns nothing about prompts (how an order book is written as text) or students; it turns a list of
prompt strings into per-layer hidden states, resumably, and says how fast the teacher is.
"""

from training.teacher.cache import CorruptShardError, FeatureCache
from training.teacher.extract import extract_hidden_states, measure_latency
from training.teacher.models import DEFAULT_MODEL_ID, Teacher, TeacherLoadError, load_teacher

__all__ = [
    "DEFAULT_MODEL_ID",
    "CorruptShardError",
    "FeatureCache",
    "Teacher",
    "TeacherLoadError",
    "extract_hidden_states",
    "load_teacher",
    "measure_latency",
]
