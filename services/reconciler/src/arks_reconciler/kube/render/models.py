"""An ArksModel's storage and download: the PVC and the download Job.

PVC `storage.pvc.name` (else the model's name), its spec verbatim, labelled
`arks.ai/model` and owned by the model. It is rendered whenever `storage.pvc` is given;
the platform applies it only when no PVC of that name exists (an existing PVC is reused
untouched, as upstream), which it finds out by looking, under `pvc_name(model)`.

Job `arks-model-<model>-g<generation>` (batch/v1) when `source.huggingface` is set: one
container running `arks-model-cache download` (the model cache's one-shot command,
docs/model-cache.md §5) with the repo, the revision and file patterns when given, the
cache on the model's volume (`/models/.arks-cache`) and the files placed at the model's
path as hard links (`--local-dir`), so engines find them where upstream put them. The
generation is in the name so a changed spec runs a new Job (a Job's template is
immutable); names over 63 characters (the Job controller puts the name in a pod label)
are shortened with a hash. `HF_TOKEN` comes from the token Secret's key `HF_TOKEN`.

Unlike upstream (§6.5.12) the whole instanceSpec reaches the download pod: env (e.g.
`HF_ENDPOINT`, proxies), resources, labels, annotations, volumes, mounts, init
containers and every scheduling field. The command's exit codes drive a
`podFailurePolicy`: 2 (usage) and 10-13 (not found, unauthorized, gated, unknown
revision) fail the Job at once; 1 and 20-21 (other, network, disk full) count against
the default `backoffLimit` (6), and a pod evicted or preempted (`DisruptionTarget`) is
retried without counting. No `ttlSecondsAfterFinished`: the platform deletes the Job
once it has read the result.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Final

from arks_common import resources
from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import meta, pods
from arks_reconciler.settings import KubeImages

JOB_PREFIX: Final = "arks-model-"
CACHE_ROOT: Final = posixpath.join(objects.MODELS_MOUNT, ".arks-cache")
DOWNLOAD_CONTAINER: Final = "download"
PERMANENT_EXIT_CODES: Final = (2, 10, 11, 12, 13)
"""usage; not found, unauthorized, gated, unknown revision (arks_model_cache.cli)."""
TOKEN_KEY: Final = "HF_TOKEN"


@dataclass(frozen=True)
class ModelObjects:
    """What the platform applies for a model."""

    pvc: Obj | None
    """None without `storage.pvc`; apply it only when no PVC `pvc_name(model)` exists."""
    job: Obj | None
    """The download Job when `source.huggingface` is set."""


def pvc_name(model: resources.ArksModel) -> str | None:
    """The PVC holding the model: `storage.pvc.name`, else the model's name."""
    storage = model.spec.storage
    if storage is None or storage.pvc is None:
        return None
    return storage.pvc.name or model.name


def model_problems(model: resources.ArksModel) -> list[str]:
    """Why the model cannot be stored on Kubernetes (empty: it can)."""
    storage = model.spec.storage
    if storage is None or storage.pvc is None:
        return [
            "storage.pvc is required on Kubernetes: the model's files live on a "
            "PersistentVolumeClaim that every engine mounts at /models"
        ]
    return []


def kube_model_path(model: resources.ArksModel) -> str:
    """Where pods find the model: `/models/<subPath>`, else `/models/models/<ns>/<name>`."""
    storage = model.spec.storage
    sub_path = (storage.sub_path or "").strip("/") if storage else ""
    if sub_path:
        return posixpath.join(objects.MODELS_MOUNT, sub_path)
    return posixpath.join(objects.MODELS_MOUNT, "models", model.namespace, model.name)


def job_name(model: resources.ArksModel) -> str:
    """`arks-model-<name>-g<generation>`, at most 63 characters."""
    suffix = f"-g{model.metadata.generation or 0}"
    name = f"{JOB_PREFIX}{model.name}{suffix}"
    if len(name) <= objects.MAX_LABEL_VALUE:
        return name
    digest = hashlib.sha256(model.name.encode()).hexdigest()[:8]
    room = objects.MAX_LABEL_VALUE - len(JOB_PREFIX) - len(suffix) - len(digest) - 1
    return f"{JOB_PREFIX}{model.name[:room].rstrip('-.')}-{digest}{suffix}"


def download_command(model: resources.ArksModel) -> list[str]:
    """`arks-model-cache download REPO ...` for the model."""
    source = model.spec.source
    hub = source.huggingface if source else None
    command = ["arks-model-cache", "download", model.spec.model]
    if hub is not None and hub.revision:
        command += ["--revision", hub.revision]
    for pattern in (hub.allow_patterns if hub else None) or []:
        command += ["--allow", pattern]
    for pattern in (hub.ignore_patterns if hub else None) or []:
        command += ["--ignore", pattern]
    command += ["--cache-root", CACHE_ROOT, "--local-dir", kube_model_path(model)]
    command += ["--namespace", model.namespace, "--model-name", model.name]
    command += ["--job-id", job_name(model)]
    if model.spec.pin:
        command.append("--pin")
    return command


def _env(model: resources.ArksModel) -> list[Obj]:
    source = model.spec.source
    hub = source.huggingface if source else None
    if hub is None or hub.token_secret_ref is None or not hub.token_secret_ref.name:
        return []
    ref = {"name": hub.token_secret_ref.name, "key": TOKEN_KEY}
    return [{"name": TOKEN_KEY, "valueFrom": {"secretKeyRef": ref}}]


def _owner(model: resources.ArksModel, uid: str) -> Obj:
    return objects.owner_reference(model.kind, model.name, uid)


def _labels(model: resources.ArksModel) -> dict[str, str]:
    return {objects.MODEL_LABEL: model.name}


def pvc(model: resources.ArksModel, uid: str) -> Obj | None:
    """The model's PVC (spec verbatim), or None without `storage.pvc`."""
    name = pvc_name(model)
    if name is None or model.spec.storage is None or model.spec.storage.pvc is None:
        return None
    out = meta.obj(
        "v1",
        "PersistentVolumeClaim",
        name,
        model.namespace,
        labels=_labels(model),
        owner=_owner(model, uid),
    )
    out["spec"] = dict(model.spec.storage.pvc.spec)
    return out


def download_job(model: resources.ArksModel, image: str, uid: str) -> Obj | None:
    """The download Job, or None when nothing needs downloading."""
    volume = pods.models_volume(model)
    if model.in_existing_storage or volume is None:
        return None
    volume = {"name": volume["name"], "persistentVolumeClaim": {"claimName": pvc_name(model)}}
    instance = pods.instance_fields(model.spec.instance_spec)
    main = pods.container(
        DOWNLOAD_CONTAINER,
        image,
        download_command(model),
        instance,
        env_first=_env(model),
        models_mount=True,
        read_only=False,
    )
    template = pods.pod_template(
        instance,
        main,
        labels=objects.managed_labels(**_labels(model)),
        model_volume=volume,
        pull_secrets=model.spec.image_pull_secrets,
        pod_overrides={"restartPolicy": "Never"},
    )
    out = meta.obj(
        "batch/v1",
        "Job",
        job_name(model),
        model.namespace,
        labels=_labels(model),
        owner=_owner(model, uid),
    )
    out["spec"] = {
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": DOWNLOAD_CONTAINER,
                        "operator": "In",
                        "values": list(PERMANENT_EXIT_CODES),
                    },
                },
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": template,
    }
    return out


def model_objects(model: resources.ArksModel, *, images: KubeImages, uid: str) -> ModelObjects:
    """The model's PVC and download Job (see the module doc)."""
    return ModelObjects(pvc=pvc(model, uid), job=download_job(model, images.model_cache, uid))
