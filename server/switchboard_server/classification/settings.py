"""Settings of the classification service (prefix ``SWITCHBOARD_CLASSIFICATION_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClassificationSettings(BaseSettings):
    """Classifier backend, data and run-time learning."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_CLASSIFICATION_", frozen=True, extra="ignore"
    )

    backend: Literal["tfidf", "embeddings", "hybrid"] = Field(
        default="tfidf", description="Model backend."
    )
    variant: str = Field(
        default="stable",
        pattern=r"^[a-z][a-z0-9_]*$",
        description=(
            "The model variant this process serves (set by the mesh from the topology's "
            "variants); labels the rollout metrics."
        ),
    )
    comparator_address: str = Field(
        default="",
        pattern=r"^$|^[^:]+:[0-9]+$",
        description=(
            "host:port (UDP) of the rollout comparator that joins shadow answers with "
            "stable's (set by the mesh for a service with variants); empty: none."
        ),
    )
    default_top_k: int = Field(default=3, ge=0, le=20, description="Alternatives returned.")
    train_path: Path | None = Field(
        default=None,
        description="Training data (JSON Lines); unset uses the bundled HWU64 train split.",
    )
    validation_path: Path | None = Field(
        default=None,
        description=(
            "Held-out data for calibration and the out-of-scope threshold; unset uses the "
            "bundled HWU64 validation split with the bundled train data, else a split of "
            "the training data."
        ),
    )
    data_format: Literal["auto", "jsonl", "csv", "rasa"] = Field(
        default="auto",
        description=(
            "Format of the training and validation files; auto goes by the extension "
            "(.jsonl, .csv/.tsv, .yml/.yaml for Rasa NLU)."
        ),
    )
    text_column: str | None = Field(
        default=None,
        min_length=1,
        description="CSV column / JSON key of the text (unset: text).",
    )
    label_column: str | None = Field(
        default=None,
        min_length=1,
        description="CSV column / JSON key of the label (unset: label for CSV, intent for JSON).",
    )
    holdout_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="Share of the training data held out when no validation file is given.",
    )
    tfidf_c: float = Field(default=0.5, gt=0, description="Regularisation C of the linear SVM.")
    tfidf_char_min_df: int = Field(
        default=2, ge=1, description="Minimum document frequency of a character n-gram."
    )
    embeddings_c: float = Field(
        default=3.0, gt=0, description="Regularisation C of the embeddings' logistic head."
    )
    hybrid_weight: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Weight of the embeddings' probabilities in the hybrid backend.",
    )
    embedding_batch_size: int = Field(
        default=64, ge=1, le=1024, description="Texts per ONNX encoder run."
    )
    embedding_max_tokens: int = Field(
        default=128, ge=8, le=512, description="Tokens kept per text by the encoder."
    )
    onnx_threads: int = Field(
        default=2, ge=0, le=64, description="onnxruntime intra-op threads (0 = its default)."
    )
    target_in_scope_acceptance: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description=(
            "Default out-of-scope threshold: the top confidence below which only "
            "1 - this share of held-out in-scope texts falls."
        ),
    )
    min_confidence_threshold: float = Field(
        default=0.05, ge=0, le=1, description="Lowest tuned out-of-scope threshold."
    )
    max_confidence_threshold: float = Field(
        default=0.7, ge=0, le=1, description="Highest tuned out-of-scope threshold."
    )
    overlay_min_similarity: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Cosine similarity at which a run-time example decides the verdict.",
    )
    retrain_delay_s: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="Quiet time after AddExamples before the background retrain starts.",
    )
    retrain_enabled: bool = Field(
        default=True, description="Retrain the base model in the background after AddExamples."
    )
    max_runtime_examples: int = Field(
        default=100_000, ge=1, description="Most run-time examples stored in total."
    )
    inference_threads: int = Field(
        default=2, ge=1, le=64, description="Threads that run inference off the event loop."
    )
    inline_max_texts: int = Field(
        default=16,
        ge=0,
        le=1024,
        description=(
            "TF-IDF requests of at most this many texts run on the event loop: inference"
            " is sub-millisecond and a thread hop costs more under load (0 = always a thread)."
        ),
    )
    discovery_enabled: bool = Field(
        default=False,
        description=(
            "Keep the texts answered out of scope (session ids hashed) for `switchboard discover`."
        ),
    )
    discovery_max_messages: int = Field(
        default=10_000, ge=1, le=10_000_000, description="Most out-of-scope messages kept."
    )
    discovery_max_age_s: float = Field(
        default=7 * 86_400.0, gt=0, description="Age after which a kept message is dropped."
    )
    discovery_salt_file: Path | None = Field(
        default=None,
        description=(
            "File with the salt that hashes session ids (unset: <data_dir>/classification/"
            "discovery.salt, created with random bytes)."
        ),
    )
    artifacts_kept: int = Field(
        default=5, ge=1, le=100, description="Model artifacts kept in the data directory."
    )
