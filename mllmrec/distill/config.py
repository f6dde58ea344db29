"""Distillation and serving configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmrec.config import REQUIRED, Checked, ConfigError, opt


@dataclass(frozen=True, kw_only=True)
class DistillSettings(Checked):
    """How the teacher and the student are built and trained (no paths: eval scripts reuse these)."""

    channels: tuple[str, ...] = opt(
        ("auto",), "Store channels the teacher reads; auto = mm plus visual/text when the store has them."
    )
    teacher_dim: int = opt(64, "Teacher: dimension of each channel's projection and user vectors.")
    teacher_layers: int = opt(2, "Teacher: graph propagation layers over the user-item graph.")
    prompt_tokens: int = opt(16, "Teacher: PCA hard tokens per channel that the soft prompts are built from.")
    teacher_item_ids: bool = opt(
        False, "Teacher: add item ID embeddings to the item features (zeroed for untrained items)."
    )
    teacher_kind: Literal["promptmm", "freedom"] = opt(
        "promptmm",
        "Teacher model: promptmm (features + soft prompts over the user-item graph) or freedom "
        "(frozen item kNN graphs + degree-pruned LightGCN + projected content; mllmrec.recsys.freedom).",
    )
    teacher_knn: int = opt(
        10, "Freedom teacher: neighbours per item in each channel's frozen item-item graph."
    )
    teacher_item_layers: int = opt(1, "Freedom teacher: propagation layers over the item-item graph.")
    teacher_edge_keep: float = opt(
        0.2,
        "Freedom teacher: share of user-item edges kept each epoch (degree-sensitive "
        "pruning; 0.2 = FREEDOM's dropout 0.8).",
    )
    teacher_content_loss: float = opt(
        0.01, "Freedom teacher: weight of the BPR loss of users against projected content."
    )
    teacher_content_in_score: bool = opt(
        False,
        "Freedom teacher: add the projected content to the item vectors it "
        "scores (lost on Office validation; content then enters via the item graph).",
    )
    teacher_prompt: bool = opt(
        False, "Freedom teacher: add PromptMM soft prompts (from --prompt-tokens PCA hard tokens)."
    )
    teacher_cf_weights: tuple[float, ...] = opt(
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
        "Teacher: weights w of the collaborative item-item channel (EASE on the training "
        "interactions) mixed into its scores after training (mllmrec.recsys.cf_blend), chosen on "
        "validation Recall@20; a w > 0 is kept only if it beats the teacher alone. 0 alone: off.",
    )
    teacher_cf_l2: tuple[float, ...] = opt(
        (50.0, 100.0, 200.0, 500.0, 1000.0),
        "Teacher: EASE ridge weights tried for that channel (chosen by EASE's own validation Recall@20).",
    )
    teacher_reg: float | None = opt(
        None, "L2 weight of the teacher; default: --reg for promptmm, 0 for freedom."
    )
    student: str = opt(
        "lightgcn",
        "Student ID tower: a recsys registry model with ID tables (mf: matrix "
        "factorisation, lightgcn; see mllmrec.recsys.registry).",
    )
    dim: int = opt(64, "Student embedding dimension (e.g. 32 or 64).")
    student_layers: int = opt(2, "LightGCN student: propagation layers.")
    losses: tuple[str, ...] = opt(
        ("bpr", "pairwise_kd:0.5", "listwise_kd:1", "embedding_kd:0.1"),
        "Student losses as NAME[:WEIGHT], NAME a key of mllmrec.distill.losses.LOSSES (see the default); "
        "from Python, run_distill(cfg, losses=[...]) also takes loss objects.",
    )
    kd: bool = opt(True, "Distil from the teacher; --no-kd trains the same student with its bpr loss only.")
    tau: float = opt(1.0, "Temperature of the pairwise and list-wise KD losses.")
    alpha: float = opt(2.0, "Exponent of the embedding KD loss (1 - cos)^alpha.")
    negatives: int = opt(10, "List-wise KD: sampled negatives per positive.")
    tune_prompt: bool = opt(True, "Tune the teacher's prompt module again during distillation (PromptMM).")
    teacher_bpr: float = opt(
        1.0, "Weight of the teacher's own BPR while its prompts are tuned during distillation."
    )
    epochs: int = opt(200, "Student: most epochs (early stopping on validation Recall@20).")
    teacher_epochs: int = opt(200, "Teacher: most epochs (early stopping on validation Recall@20).")
    batch_size: int = opt(2048, "Training pairs per batch.")
    lr: float = opt(0.005, "Adam learning rate of the student (and of the teacher unless --teacher-lr).")
    teacher_lr: float | None = opt(None, "Adam learning rate of the teacher; default: --lr.")
    patience: int = opt(
        20,
        "Stop after this many epochs without a better validation Recall@20 (KD students can plateau for "
        "a while before improving).",
    )
    reg: float = opt(1e-4, "L2 weight on the batch's embedding rows.")
    mapping_l2: float | None = opt(
        None, "Ridge penalty of the new-item mapping; default: picked on held-out training items."
    )
    seed: int = opt(0, "Seed for the split, initialisation and sampling.")
    device: str = opt("cpu", "Torch device (cpu, cuda, cuda:1 ...).")
    progress: bool = opt(True, "Show progress bars.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "teacher_dim",
            "prompt_tokens",
            "dim",
            "negatives",
            "epochs",
            "teacher_epochs",
            "batch_size",
            "patience",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        from mllmrec.recsys.registry import UnknownModel, check_student

        try:
            check_student(self.student)
        except UnknownModel as e:
            raise ConfigError(f"student: {e}") from e
        if self.teacher_layers < 0 or self.student_layers < 0:
            raise ConfigError("teacher_layers and student_layers must be >= 0")
        if not (self.tau > 0 and self.alpha > 0 and self.lr > 0 and self.reg >= 0 and self.teacher_bpr >= 0):
            raise ConfigError("tau, alpha and lr must be > 0; reg and teacher_bpr >= 0")
        if self.teacher_knn < 1 or self.teacher_item_layers < 0 or not 0 < self.teacher_edge_keep <= 1:
            raise ConfigError("teacher_knn >= 1, teacher_item_layers >= 0, 0 < teacher_edge_keep <= 1")
        if self.teacher_content_loss < 0 or (self.teacher_reg is not None and self.teacher_reg < 0):
            raise ConfigError("teacher_content_loss and teacher_reg must be >= 0")
        if not self.teacher_cf_weights or not all(0 <= w <= 1 for w in self.teacher_cf_weights):
            raise ConfigError(f"teacher_cf_weights must be in [0, 1], got {self.teacher_cf_weights}")
        if not self.teacher_cf_l2 or not all(x > 0 for x in self.teacher_cf_l2):
            raise ConfigError(f"teacher_cf_l2 must be > 0, got {self.teacher_cf_l2}")
        if self.teacher_lr is not None and not self.teacher_lr > 0:
            raise ConfigError(f"teacher_lr must be > 0, got {self.teacher_lr}")
        if self.mapping_l2 is not None and not self.mapping_l2 > 0:
            raise ConfigError(f"mapping_l2 must be > 0, got {self.mapping_l2}")


@dataclass(frozen=True, kw_only=True)
class DistillConfig(DistillSettings):
    """Distil a multimodal teacher into an ID tower (PromptMM): serving becomes a table lookup plus a
    nearest-neighbour search. Teacher: frozen store vectors + soft prompts + graph propagation, BPR.
    Student: MF or LightGCN trained with BPR + pairwise, list-wise and embedding KD. Model selection
    on validation Recall@20 only; test is evaluated once, after selection. Store items without
    training interactions get student vectors from a learned mapping of their MLLM vectors."""

    store: str = opt(
        REQUIRED,
        "Embedding store written by `mllmrec embed` (channel mm, optional visual/text).",
        positional=True,
    )
    interactions: str = opt(REQUIRED, "Interaction log (.csv, .tsv/.inter, .parquet, .jsonl).")
    out: str = opt(REQUIRED, "Run directory to write (tables, id maps, new-item mapping, manifest).")
    user_field: str = opt("user_id", "Column of the log holding the user id.")
    item_field: str = opt(
        "item_id", "Column of the log holding the item id (matched against the store's ids)."
    )
    time_field: str = opt("timestamp", "Column of the log holding the time (for --split temporal).")
    split: str = opt(
        "random",
        "A split protocol: random (MMRec per-user 8:1:1 with --seed), temporal, cold (20%% of "
        "items held out), labels (MMRec x_label); or the folder of a saved split (mllmrec.catalog.saved_splits).",
    )
    missing_items: Literal["drop", "error"] = opt(
        "drop",
        "Log items that have no vector in the store: drop their interactions (counted and listed in "
        "the manifest) or stop with an error.",
    )
    overwrite: bool = opt(False, "Replace an existing run directory in --out.")


@dataclass(frozen=True, kw_only=True)
class RecommendConfig(Checked):
    """Top-k items for users from a distill run: faiss inner-product search over the student's item
    table (GPU faiss when installed). Items the user interacted with are left out unless
    --no-exclude-seen; store items that had no training interactions come through the new-item mapping.
    --index auto searches exactly up to 200,000 items and with IVF above; an approximate index is
    built once, saved in the run directory with its measured recall@100, and reused."""

    run: str = opt(REQUIRED, "Run directory written by `mllmrec distill`.", positional=True)
    user: str | None = opt(None, "One user id to recommend for (printed).")
    users_file: str | None = opt(None, "CSV or parquet file of user ids (column --user-field); writes --out.")
    user_field: str = opt("user_id", "Column of --users-file holding the user ids.")
    out: str | None = opt(
        None, "With --users-file: output .parquet or .csv (user_id, rank, item_id, score, via)."
    )
    k: int = opt(20, "Number of items per user.", short="-k")
    exclude_seen: bool = opt(True, "Leave out items the user already interacted with (in the run's log).")
    unknown_users: Literal["popularity", "error"] = opt(
        "popularity",
        "A user the run has no vector for: recommend the most popular items, or stop with an error.",
    )
    store: str | None = opt(None, "Embedding store for new items; default: the store the run was trained on.")
    new_items: bool = opt(True, "Also recommend store items without training interactions (via the mapping).")
    index: Literal["auto", "exact", "hnsw", "ivf", "ivfpq"] = opt(
        "auto",
        "Search: exact (every item scored), ivf (k-means cells; the fastest at recall@100 >= 0.95 "
        "in eval/bench_serve.py), ivfpq (ivf over ~8x smaller compressed vectors, for memory-bound "
        "catalogues), hnsw (graph; better for small k). auto: exact up to 200,000 items, ivf above. Approximate indexes are saved in RUN/index/ and refused once the "
        "tables or new items change (--rebuild-index).",
    )
    target_recall: float | None = opt(
        None,
        "Approximate index: tune efSearch/nprobe to the cheapest value whose recall@100 against exact "
        "search on 1,000 of the run's users reaches this (e.g. 0.95); the measured recall is saved with the index.",
    )
    rebuild_index: bool = opt(False, "Rebuild a saved approximate index (needed after the tables changed).")
    all_users: bool = opt(
        False, "Recommend for every user of the run; writes --out (a folder of parquet parts)."
    )
    chunk_users: int = opt(10_000, "--all-users / --users-file to a folder: users per parquet part file.")
    resume: bool = opt(
        False, "--all-users: continue an interrupted batch run in --out (finished parts are kept)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if sum(x is not None and x is not False for x in (self.user, self.users_file, self.all_users)) != 1:
            raise ConfigError("give exactly one of --user, --users-file and --all-users")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise ConfigError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.chunk_users < 1:
            raise ConfigError(f"chunk_users must be >= 1, got {self.chunk_users}")
        if self.all_users:
            if self.out is None:
                raise ConfigError("--all-users needs --out (a folder for the parquet parts)")
            return
        if self.users_file is not None and self.out is None:
            raise ConfigError("--users-file needs --out (a .parquet or .csv file)")
        if self.out is not None and not self.out.endswith((".parquet", ".csv")):
            raise ConfigError(f"--out must end in .parquet or .csv, got {self.out!r}")


@dataclass(frozen=True, kw_only=True)
class ServeConfig(Checked):
    """Serve a distill run over HTTP (Starlette + uvicorn): GET /recommend?user=U&k=20, POST /recommend
    {"users": [...], "k": 20}, GET /health. JSON out: item_id, score and via (table, new-item mapping,
    popularity). The run and its index are loaded once; --index auto searches exactly up to 200,000
    items and with IVF above (see `mllmrec recommend --help`)."""

    run: str = opt(REQUIRED, "Run directory written by `mllmrec distill`.", positional=True)
    host: str = opt("127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    port: int = opt(8000, "Port to listen on.")
    index: Literal["auto", "exact", "hnsw", "ivf", "ivfpq"] = opt(
        "auto", "Search index, as for `mllmrec recommend --index` (a saved one is reused)."
    )
    target_recall: float | None = opt(None, "As for `mllmrec recommend --target-recall`.")
    rebuild_index: bool = opt(False, "Rebuild a saved approximate index first.")
    store: str | None = opt(None, "Embedding store for new items; default: the store the run was trained on.")
    new_items: bool = opt(True, "Also recommend store items without training interactions (via the mapping).")
    unknown_users: Literal["popularity", "error"] = opt(
        "popularity", "A user the run has no vector for: the most popular items, or a 404 naming the user."
    )
    max_k: int = opt(1000, "Largest k a request may ask for (larger: 400).")
    max_batch: int = opt(1000, "Most users in one POST /recommend (more: 413).")
    log_level: str = opt("warning", "uvicorn's log level (info logs every request).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.port < 65536 or self.max_k < 1 or self.max_batch < 1:
            raise ConfigError("port must be in 1..65535, max_k and max_batch >= 1")
        if self.target_recall is not None and not 0 < self.target_recall <= 1:
            raise ConfigError(f"target_recall must be in (0, 1], got {self.target_recall}")
