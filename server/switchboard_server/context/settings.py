"""Settings of the context service (prefix ``SWITCHBOARD_CONTEXT_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard_server.secret_files import read_secret_files


class ContextSettings(BaseSettings):
    """Memory caps, storage backend, knowledge base, ranking and cache."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_CONTEXT_", frozen=True, extra="ignore"
    )

    store: Literal["sqlite", "redis"] = Field(default="sqlite", description="Storage backend.")
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL (a secret: it may hold a password).",
    )
    redis_url_file: Path | None = Field(
        default=None, description="A file holding REDIS_URL (a Docker/Kubernetes secret)."
    )
    redis_password: SecretStr = Field(
        default=SecretStr(""), description="Redis password, if not in the URL; empty: none."
    )
    redis_password_file: Path | None = Field(
        default=None, description="A file holding REDIS_PASSWORD."
    )
    redis_key_prefix: str = Field(
        default="switchboard:context:",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key the context service writes.",
    )
    redis_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Socket timeout of Redis commands, in seconds."
    )
    store_check_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="How often the service checks its store is reachable; health reads "
        "NOT_SERVING from the first failed check until one passes again.",
    )
    store_check_timeout_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="A store check that takes longer than this counts as failed.",
    )
    sqlite_filename: str = Field(
        default="context.sqlite3",
        min_length=1,
        description="SQLite database file inside the service's data directory.",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite synchronous mode: FULL fsyncs every commit (survives power loss); "
        "NORMAL survives a killed process but not a power loss.",
    )
    sqlite_readers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="SQLite reader threads (one connection each); 0 (default) reads on the "
        "event loop, which measured faster: reads are short (ranking is the index's).",
    )
    sqlite_memory_mirror_entries: int = Field(
        default=100_000,
        ge=0,
        le=10_000_000,
        description="SQLite: most memory entries held in memory (whole sessions, least "
        "recently used out first) so GetContext reads memory without SQL; 0 disables.",
    )
    working_cap: int = Field(
        default=10, ge=1, le=100_000, description="Most working-memory entries per session."
    )
    episodic_cap: int = Field(
        default=50, ge=1, le=100_000, description="Most episodic-memory entries per session."
    )
    semantic_cap: int = Field(
        default=100, ge=1, le=100_000, description="Most semantic-memory entries per session."
    )
    max_document_bytes: int = Field(
        default=65_536, ge=64, le=4_194_304, description="Largest document text, in bytes."
    )
    max_title_bytes: int = Field(
        default=512, ge=16, le=65_536, description="Largest document title, in bytes."
    )
    max_documents_per_request: int = Field(
        default=64, ge=1, le=10_000, description="Most documents in one IngestDocuments call."
    )
    passage_max_chars: int = Field(
        default=700,
        ge=64,
        le=65_536,
        description="Long document text is split into passages of at most this many characters.",
    )
    default_max_results: int = Field(
        default=8, ge=1, le=50, description="Sources returned when a request asks for 0."
    )
    default_max_context_chars: int = Field(
        default=4000,
        ge=64,
        le=65_536,
        description="Size budget of the context block when a request asks for 0.",
    )
    index_dir: str = Field(
        default="",
        description="Directory of this replica's knowledge index (tantivy; derived from the "
        "store's document log, rebuilt when missing). Empty: <data dir>/context/index with "
        "SQLite, <data dir>/context/index-<port> with Redis (one per replica).",
    )
    index_heap_mb: int = Field(
        default=64,
        ge=15,
        le=4096,
        description="Memory budget of the index writer, in MB: more means fewer segments "
        "flushed during a large batch.",
    )
    index_writer_threads: int = Field(
        default=1,
        ge=1,
        le=16,
        description="tantivy indexing threads: each analyses passages (in Rust, beside the "
        "Python threads) into its own segments; more helps a bulk ingest only with idle cores.",
    )
    index_batch_documents: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Most documents applied to the index in one commit while catching up.",
    )
    index_poll_interval_s: float = Field(
        default=0.5,
        gt=0,
        le=300,
        description="How often a replica reads the document log for writes made through "
        "other replicas; such a write is searchable here within this interval plus one "
        "index commit.",
    )
    hybrid: Literal["auto", "on", "off"] = Field(
        default="off",
        description="Fuse BM25 with dense MiniLM vectors (reciprocal rank fusion): off (the "
        "default) is BM25 alone, auto is on when the embeddings extra is installed, on "
        "requires it. The vectors are rebuilt in memory at every start.",
    )
    hybrid_rrf_k: int = Field(
        default=60, ge=1, le=10_000, description="The k of reciprocal rank fusion."
    )
    hybrid_depth: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Passages each ranker contributes to the fusion (at least max_results).",
    )
    hybrid_budget_ms: float = Field(
        default=100.0,
        gt=0,
        le=10_000,
        description="Longest wait for the dense search of a query (encoding included); past "
        "it, that query is ranked by BM25 alone.",
    )
    cache_ttl_s: float = Field(
        default=60.0, ge=0, le=86_400, description="Lifetime of a cached context; 0 disables."
    )
    cache_max_entries: int = Field(
        default=4096, ge=0, le=1_000_000, description="Most cached contexts (LRU); 0 disables."
    )
    seed_default_knowledge: bool = Field(
        default=True,
        description="On first start with an empty store, ingest the built-in knowledge base "
        "that describes Switchboard.",
    )

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, values: Any) -> Any:
        return read_secret_files(values, ("redis_url", "redis_password"))

    @model_validator(mode="after")
    def _heap_per_writer_thread(self) -> ContextSettings:
        if self.index_heap_mb < 15 * self.index_writer_threads:  # tantivy's floor per thread
            raise ValueError(
                "SWITCHBOARD_CONTEXT_INDEX_HEAP_MB must be at least 15 per "
                f"SWITCHBOARD_CONTEXT_INDEX_WRITER_THREADS ({self.index_heap_mb} MB for "
                f"{self.index_writer_threads})"
            )
        return self
