"""The pods of a Job and its completion indexes (pkg/controller/job/indexed_job_utils.go).

Every pod carries the labels the API server and the Job controller give it upstream:
`batch.kubernetes.io/job-name` and `job-name`, `batch.kubernetes.io/controller-uid` and
`controller-uid` (the Job's uid); in Indexed mode also label and annotation
`batch.kubernetes.io/job-completion-index`, the env `JOB_COMPLETION_INDEX` (a fieldRef to
that annotation, for the kubelet to resolve), generateName `<job>-<index>-` and
`spec.hostname` `<job>-<index>` (with `subdomain`, the pod's hostname is unique).
`completedIndexes` is kept in upstream's interval form, "0-2,5".
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.controllers.pods import new_pod

Obj = dict[str, Any]
INDEX = "batch.kubernetes.io/job-completion-index"


def index_of(pod: Obj) -> int | None:
    meta = pod["metadata"]
    value = (meta.get("annotations") or {}).get(INDEX) or (meta.get("labels") or {}).get(INDEX)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def parse_indexes(text: str | None) -> set[int]:
    found: set[int] = set()
    for part in (text or "").split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            found.update(range(int(low), int(high) + 1))
        elif part.strip():
            found.add(int(part))
    return found


def format_indexes(indexes: set[int]) -> str:
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def new_job_pod(job: Obj, index: int | None) -> Obj:
    meta = job["metadata"]
    name, uid = meta["name"], meta["uid"]
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    template = (job.get("spec") or {}).get("template") or {}
    if index is None:
        return new_pod(template, job, generate_name=f"{name}-", labels=labels)
    labels[INDEX] = str(index)
    pod = new_pod(
        template,
        job,
        generate_name=f"{name}-{index}-",
        labels=labels,
        annotations={INDEX: str(index)},
    )
    pod["spec"].setdefault("hostname", f"{name}-{index}")
    variable = {
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}},
    }
    for container in [
        *(pod["spec"].get("containers") or []),
        *(pod["spec"].get("initContainers") or []),
    ]:
        env = container.setdefault("env", [])
        if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
            env.append(dict(variable))
    return pod
