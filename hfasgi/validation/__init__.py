"""Request validation: :class:`RequestValidator`, its compiled schemas, and raw-media sniffing."""

from hfasgi.validation.engine import CompiledSchema, Violation
from hfasgi.validation.middleware import RequestValidator, ValidatorConfig

__all__ = ["CompiledSchema", "RequestValidator", "ValidatorConfig", "Violation"]
