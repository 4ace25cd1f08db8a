"""Field tokens from a model's encoder, for bodies that attend over feature fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfmtl.layers.feature_encoder import FeatureEncoder
from tfmtl.layers.field_tokens import FieldTokens


def build_field_tokens(encoder: FeatureEncoder, tokens: FieldTokens) -> tuple:
    """Builds `tokens` for `encoder`'s fields and returns the tokens' shape `(None, fields, units)`."""
    fields_shape = [(None, len(table.features), table.embedding_dim) for table in encoder.field_embeddings]
    numeric_shape = (None, encoder.numeric_encoder.output_dim) if encoder.numeric_encoder else None
    tokens.build(fields_shape, numeric_shape)
    return tokens.compute_output_shape(fields_shape, numeric_shape)


def field_tokens(encoder: FeatureEncoder, tokens: FieldTokens, inputs: Mapping[str, Any]) -> Any:
    """One token per feature field (embedded and numeric) for raw `inputs`: `(batch, fields, units)`."""
    numeric = encoder.numeric_encoder(inputs) if encoder.numeric_encoder else None
    return tokens(encoder.embed_fields(inputs), numeric)
