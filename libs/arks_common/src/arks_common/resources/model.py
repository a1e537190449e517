"""ArksModel: a model (a Hugging Face repo, or files already in storage) shared by engines.

Upstream fields plus our extensions: `source.huggingface.revision/allowPatterns/
ignorePatterns`, `storage.localPath`, `preload`, `pin`, and status `resolvedRevision`,
`path`, `sizeBytes`. `storage` stays optional as upstream: a model with no storage and no
source loads, and the reconciler reports it through a condition instead of crashing.
"""

from __future__ import annotations

import posixpath
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from arks_common.resources.instance import InstanceSpec
from arks_common.resources.meta import (
    MODELS_MOUNT_PATH,
    ArksBaseModel,
    ArksResource,
    Bool,
    Int64,
    KubeObject,
    LocalObjectReference,
    ResourceStatus,
)

DEFAULT_REVISION = "main"


class ModelPhase(StrEnum):
    """Values of ArksModel status.phase (upstream's, "" before the first reconcile)."""

    PENDING = "Pending"
    STORAGE_CREATING = "StorageCreating"
    MODEL_LOADING = "ModelLoading"
    READY = "Ready"
    FAILED = "Failed"


class ModelConditionType(StrEnum):
    """Condition types of an ArksModel."""

    STORAGE_CREATED = "StorageCreated"
    MODEL_LOADED = "ModelLoaded"
    READY = "Ready"


class HuggingFaceSource(ArksBaseModel):
    """Download from the Hugging Face Hub (the repo id is spec.model)."""

    token_secret_ref: LocalObjectReference | None = Field(
        None, description="Secret in the same namespace whose key HF_TOKEN holds the Hub token."
    )
    revision: str | None = Field(
        None,
        min_length=1,
        description="Arks extension: branch, tag or commit to download; main when omitted.",
    )
    allow_patterns: list[str] | None = Field(
        None, description="Arks extension: download only files matching these globs."
    )
    ignore_patterns: list[str] | None = Field(
        None, description="Arks extension: skip files matching these globs."
    )

    def revision_or_default(self) -> str:
        """The revision to download: `revision`, else main."""
        return self.revision or DEFAULT_REVISION


class ModelSource(ArksBaseModel):
    """Where the model comes from; absent means the files are already in storage."""

    huggingface: HuggingFaceSource | None = Field(None, description="Hugging Face Hub download.")


class PVCStorage(ArksBaseModel):
    """A PersistentVolumeClaim holding the model (created from `spec` if missing)."""

    name: str | None = Field(
        None, description="PVC name; the model's name when the controller creates it."
    )
    spec: KubeObject = Field(
        description="PersistentVolumeClaimSpec used verbatim when the PVC is created."
    )


def _check_relative(value: str | None) -> str | None:
    if value is not None and ".." in value.split("/"):
        raise ValueError(f"must not contain a '..' segment (got {value!r})")
    return value


class ModelStorage(ArksBaseModel):
    """Where the model files live."""

    pvc: PVCStorage | None = Field(None, description="PersistentVolumeClaim storage.")
    sub_path: str | None = Field(
        None,
        description="Model directory inside the storage; models/<namespace>/<name> when omitted.",
        json_schema_extra={"not": {"pattern": r"(^|/)\.\.(/|$)"}},
    )
    local_path: str | None = Field(
        None,
        pattern=r"^/",
        description="Arks extension: an absolute directory on the local platform that already "
        "holds the model (with subPath appended when set). With no source the model is Ready "
        "at once.",
        json_schema_extra={"not": {"pattern": r"(^|/)\.\.(/|$)"}},
    )

    @field_validator("sub_path", "local_path")
    @classmethod
    def _no_parent_segments(cls, value: str | None) -> str | None:
        return _check_relative(value)


class ArksModelSpec(ArksBaseModel):
    """Desired state of an ArksModel."""

    model: str = Field(min_length=1, description="Hugging Face repo id, e.g. Qwen/Qwen2.5-7B.")
    source: ModelSource | None = Field(
        None, description="Download source; absent means the model is already in storage."
    )
    storage: ModelStorage | None = Field(None, description="Where the model files live.")
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Pull secrets of the download pod."
    )
    instance_spec: InstanceSpec = Field(
        default_factory=InstanceSpec,
        description="Pod pass-through for the download pod (only scheduling fields are used).",
    )
    preload: Bool = Field(
        False,
        description="Arks extension: warm the page cache with the model files before engines "
        "start.",
    )
    pin: Bool = Field(
        False, description="Arks extension: never evict this model from the model cache."
    )


class ArksModelStatus(ResourceStatus):
    """Observed state of an ArksModel."""

    phase: str = Field(
        "", description="'' (new), Pending, StorageCreating, ModelLoading, Ready or Failed."
    )
    resolved_revision: str | None = Field(
        None, description="Arks extension: the commit the requested revision resolved to."
    )
    path: str | None = Field(
        None, description="Arks extension: where the model files are on the platform."
    )
    size_bytes: Int64 | None = Field(
        None, ge=0, description="Arks extension: total size of the model files."
    )


class ArksModel(ArksResource[ArksModelSpec, ArksModelStatus]):
    """ArksModel is a model downloaded once into shared storage and mounted by engines."""

    kind: Literal["ArksModel"] = Field("ArksModel", description="Always ArksModel.")

    def model_path(self, root: str = MODELS_MOUNT_PATH) -> str:
        """Where engines find the model files.

        `storage.localPath` (joined with `subPath`) when set; otherwise, as upstream,
        `<root>/<subPath>` or `<root>/models/<namespace>/<name>`, with root the `/models`
        mount of engine pods (a platform may pass its own storage root).
        """
        storage = self.spec.storage
        sub_path = (storage.sub_path or "").strip("/") if storage else ""
        if storage is not None and storage.local_path:
            return posixpath.join(storage.local_path, sub_path) if sub_path else storage.local_path
        if sub_path:
            return posixpath.join(root, sub_path)
        return posixpath.join(root, "models", self.metadata.namespace, self.metadata.name)

    @property
    def in_existing_storage(self) -> bool:
        """True when nothing needs downloading (no `source`, as upstream)."""
        return self.spec.source is None or self.spec.source.huggingface is None
