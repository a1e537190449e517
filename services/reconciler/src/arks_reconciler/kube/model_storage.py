"""ArksModel on Kubernetes: the PVC the engines mount, and the Job that downloads into it.

- No `storage.pvc` → StorageFailed with what to add (upstream crashes, §6.5.11).
- PVC `pvc_name(model)`: an existing claim is reused untouched; else the rendered one is
  created, owner-referenced to the model (garbage-collected with it).
- No `source`: the model is in existing storage: Ready at once, path under `/models`.
- `source.huggingface`: the download Job `arks-model-<name>-g<generation>` runs the
  model-cache image (`arks-model-cache download`); its pod's termination message is the
  `ModelCacheResult` JSON, which becomes `status.path`, the resolved revision and the
  size. Complete → Ready, and the Job is deleted; Failed → Failed with the result's
  message (the Job stays, so a failed download is not retried in a loop: a new
  generation of the model runs a new Job). Job changes enqueue the model (the Job's
  ownerReference), so there is no polling.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from arks_common import resources as arks
from arks_common.errors import RetryableError
from arks_common.events import ModelCacheResult
from arks_common.kubeapi import KubeApi
from arks_common.store import NotFoundError
from arks_reconciler.kube import kinds, render
from arks_reconciler.kube.applying import Applier
from arks_reconciler.kube.informers import Informer
from arks_reconciler.kube.objects import Obj
from arks_reconciler.platform import ModelObservation, ModelState
from arks_reconciler.settings import KubernetesPlatformSettings

log = logging.getLogger(__name__)


def _condition(job: Obj, kind: str) -> Obj | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _termination(pod: Obj) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        last = cs.get("lastState") or {}
        for where in (state, last):
            message = (where.get("terminated") or {}).get("message")
            if message:
                return str(message)
    return ""


def _result(message: str) -> ModelCacheResult | None:
    try:
        data: Any = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return ModelCacheResult.model_validate(data)
    except ValueError:
        return None


class ModelStorage:
    def __init__(
        self,
        settings: KubernetesPlatformSettings,
        kube: KubeApi,
        applier: Applier,
        jobs: Informer,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.applier = applier
        self.jobs = jobs

    async def _claim_exists(self, namespace: str, name: str) -> bool:
        try:
            await self.kube.request(
                "GET",
                kinds.PVC.path(namespace, name),
                where=f"get PersistentVolumeClaim {namespace}/{name}",
                grant="get on persistentvolumeclaims",
            )
        except NotFoundError:
            return False
        return True

    async def ensure(self, model: arks.ArksModel) -> ModelObservation:
        problems = render.model_problems(model)
        if problems:
            return ModelObservation(state=ModelState.STORAGE_FAILED, message="; ".join(problems))
        uid = model.metadata.uid or ""
        wanted = render.model_objects(model, images=self.settings.images, uid=uid)
        claim = render.pvc_name(model) or model.name
        storage = f"PVC {claim}"
        existing = await self._claim_exists(model.namespace, claim)
        if not existing and wanted.pvc is not None:
            await self.applier.apply(wanted.pvc)
        path = render.kube_model_path(model)
        if wanted.job is None:
            return ModelObservation(
                state=ModelState.READY, path=path, storage=storage, in_existing_storage=True
            )
        job_name = wanted.job["metadata"]["name"]
        job = self.jobs.get(model.namespace, job_name)
        if job is None:
            await self.applier.apply(wanted.job)
            return ModelObservation(
                state=ModelState.LOADING,
                storage=storage,
                message=f"downloading {model.spec.model} in Job {job_name}",
            )
        if _condition(job, "Complete"):
            result = await self._job_result(model.namespace, job_name)
            await self.applier.delete(kinds.JOB, model.namespace, job_name)
            return ModelObservation(
                state=ModelState.READY,
                path=(result.path if result and result.path else path),
                storage=storage,
                resolved_revision=result.commit if result else None,
                size_bytes=(result.size_bytes or None) if result else None,
                message=result.message if result else "",
            )
        failed = _condition(job, "Failed")
        if failed:
            result = await self._job_result(model.namespace, job_name)
            detail = (result.message if result else "") or str(
                failed.get("message") or failed.get("reason") or "the download Job failed"
            )
            return ModelObservation(
                state=ModelState.FAILED,
                storage=storage,
                message=f"Job {job_name}: {detail}",
            )
        return ModelObservation(
            state=ModelState.LOADING,
            storage=storage,
            message=f"downloading {model.spec.model} in Job {job_name}",
        )

    async def _job_result(self, namespace: str, job: str) -> ModelCacheResult | None:
        """The ModelCacheResult its last pod left as termination message, if any."""
        try:
            pods = await self.kube.request(
                "GET",
                kinds.POD.path(namespace),
                query={"labelSelector": f"batch.kubernetes.io/job-name={job}"},
                where=f"list the pods of Job {namespace}/{job}",
                grant="list on pods",
            )
        except RetryableError as exc:
            log.warning("cannot read the result of Job %s/%s: %s", namespace, job, exc)
            return None
        items = sorted(
            pods.get("items") or [],
            key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""),
        )
        for pod in reversed(items):
            result = _result(_termination(pod))
            if result is not None:
                return result
        return None
