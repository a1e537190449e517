"""The protobuf messages the server decodes: field number -> JSON field, per message.

Field numbers are those of Kubernetes' `generated.proto` (k8s.io/api apps/v1, core/v1,
batch/v1, rbac/v1, policy/v1, coordination/v1; apimachinery meta/v1, util/intstr,
api/resource); JSON names are the Go json tags. `KINDS` lists the top-level kinds a
request body may carry: those the server serves that kubectl's generators create (and a
few more of the same families). Fields not listed here (status, probes, security
contexts, affinity, most volume sources...) are skipped when decoded.

Each message is a `;`-separated list of fields, each written `<number> <json> [<type>][!]`:

- `<type>`: `string` (the default), `int` (int32/int64), `bool`, `bytes` (base64 in
  JSON), `Quantity`, `IntOrString`, `Time`, `MicroTime`, or a message of `MESSAGES`;
  `[]<type>` is a repeated field, `{}<type>` a `map<string, type>` (`{}` alone: of strings);
- `!` keeps zero values (`""`, `0`, `false`): the field is a pointer in Go, or has no
  `omitempty`; without it a zero scalar is left out, as Go's JSON encoder would;
- a `<json>` of `-` is an embedded Go struct: its fields are inlined into the parent.
"""

from __future__ import annotations

from dataclasses import dataclass

SPECS: dict[str, str] = {
    # meta/v1
    "ObjectMeta": (
        "1 name; 2 generateName; 3 namespace; 4 selfLink; 5 uid; 6 resourceVersion; "
        "7 generation int; 8 creationTimestamp Time; 9 deletionTimestamp Time; "
        "10 deletionGracePeriodSeconds int!; 11 labels {}; 12 annotations {}; "
        "13 ownerReferences []OwnerReference; 14 finalizers []"
    ),
    "OwnerReference": (
        "5 apiVersion!; 1 kind!; 3 name!; 4 uid!; 6 controller bool!; 7 blockOwnerDeletion bool!"
    ),
    "LabelSelector": "1 matchLabels {}; 2 matchExpressions []LabelSelectorRequirement",
    "LabelSelectorRequirement": "1 key!; 2 operator!; 3 values []",
    # apps/v1
    "Deployment": "1 metadata ObjectMeta; 2 spec DeploymentSpec",
    "DeploymentSpec": (
        "1 replicas int!; 2 selector LabelSelector; 3 template PodTemplateSpec; "
        "4 strategy DeploymentStrategy; 5 minReadySeconds int; 6 revisionHistoryLimit int!; "
        "7 paused bool; 9 progressDeadlineSeconds int!"
    ),
    "DeploymentStrategy": "1 type; 2 rollingUpdate RollingUpdateDeployment",
    "RollingUpdateDeployment": "1 maxUnavailable IntOrString!; 2 maxSurge IntOrString!",
    # core/v1: pods
    "Pod": "1 metadata ObjectMeta; 2 spec PodSpec",
    "PodTemplateSpec": "1 metadata ObjectMeta; 2 spec PodSpec",
    "PodSpec": (
        "1 volumes []Volume; 20 initContainers []Container; 2 containers []Container; "
        "3 restartPolicy; 4 terminationGracePeriodSeconds int!; 5 activeDeadlineSeconds int!; "
        "6 dnsPolicy; 7 nodeSelector {}; 8 serviceAccountName; 9 serviceAccount; "
        "21 automountServiceAccountToken bool!; 10 nodeName; 11 hostNetwork bool; "
        "12 hostPID bool; 13 hostIPC bool; 15 imagePullSecrets []LocalObjectReference; "
        "16 hostname; 17 subdomain; 19 schedulerName; 22 tolerations []Toleration; "
        "24 priorityClassName; 25 priority int!; 29 runtimeClassName!; "
        "30 enableServiceLinks bool!"
    ),
    "Container": (
        "1 name!; 2 image; 3 command []; 4 args []; 5 workingDir; 6 ports []ContainerPort; "
        "19 envFrom []EnvFromSource; 7 env []EnvVar; 8 resources ResourceRequirements; "
        "9 volumeMounts []VolumeMount; 13 terminationMessagePath; 20 terminationMessagePolicy; "
        "14 imagePullPolicy; 16 stdin bool; 17 stdinOnce bool; 18 tty bool"
    ),
    "ContainerPort": "1 name; 2 hostPort int; 3 containerPort int!; 4 protocol; 5 hostIP",
    "EnvVar": "1 name!; 2 value; 3 valueFrom EnvVarSource",
    "EnvVarSource": (
        "1 fieldRef ObjectFieldSelector; 2 resourceFieldRef ResourceFieldSelector; "
        "3 configMapKeyRef KeySelector; 4 secretKeyRef KeySelector"
    ),
    "ObjectFieldSelector": "1 apiVersion; 2 fieldPath!",
    "ResourceFieldSelector": "1 containerName; 2 resource!; 3 divisor Quantity",
    # ConfigMapKeySelector and SecretKeySelector: the same fields.
    "KeySelector": "1 - LocalObjectReference; 2 key!; 3 optional bool!",
    "LocalObjectReference": "1 name",
    "EnvFromSource": "1 prefix; 2 configMapRef EnvSource; 3 secretRef EnvSource",
    # ConfigMapEnvSource and SecretEnvSource: the same fields.
    "EnvSource": "1 - LocalObjectReference; 2 optional bool!",
    "ResourceRequirements": "1 limits {}Quantity; 2 requests {}Quantity; 3 claims []ResourceClaim",
    "ResourceClaim": "1 name!; 2 request",
    "VolumeMount": (
        "1 name!; 2 readOnly bool; 7 recursiveReadOnly!; 3 mountPath!; 4 subPath; "
        "5 mountPropagation!; 6 subPathExpr"
    ),
    "Toleration": "1 key; 2 operator; 3 value; 4 effect; 5 tolerationSeconds int!",
    "Volume": "1 name!; 2 - VolumeSource",
    "VolumeSource": (
        "1 hostPath HostPathVolumeSource; 2 emptyDir EmptyDirVolumeSource; "
        "10 persistentVolumeClaim PersistentVolumeClaimVolumeSource; "
        "19 configMap ConfigMapVolumeSource; 6 secret SecretVolumeSource"
    ),
    "HostPathVolumeSource": "1 path!; 2 type!",
    "EmptyDirVolumeSource": "1 medium; 2 sizeLimit Quantity",
    "PersistentVolumeClaimVolumeSource": "1 claimName!; 2 readOnly bool",
    "ConfigMapVolumeSource": (
        "1 - LocalObjectReference; 2 items []KeyToPath; 3 defaultMode int!; 4 optional bool!"
    ),
    "SecretVolumeSource": "1 secretName; 2 items []KeyToPath; 3 defaultMode int!; 4 optional bool!",
    "KeyToPath": "1 key!; 2 path!; 3 mode int!",
    # core/v1
    "ConfigMap": "1 metadata ObjectMeta; 4 immutable bool!; 2 data {}; 3 binaryData {}bytes",
    "Secret": "1 metadata ObjectMeta; 5 immutable bool!; 2 data {}bytes; 4 stringData {}; 3 type",
    "Namespace": "1 metadata ObjectMeta; 2 spec NamespaceSpec",
    "NamespaceSpec": "1 finalizers []",
    "Service": "1 metadata ObjectMeta; 2 spec ServiceSpec",
    "ServiceSpec": (
        "1 ports []ServicePort; 2 selector {}; 3 clusterIP; 18 clusterIPs []; 4 type; "
        "5 externalIPs []; 7 sessionAffinity; 8 loadBalancerIP; 9 loadBalancerSourceRanges []; "
        "10 externalName; 11 externalTrafficPolicy; 12 healthCheckNodePort int; "
        "13 publishNotReadyAddresses bool; 19 ipFamilies []; 17 ipFamilyPolicy!; "
        "20 allocateLoadBalancerNodePorts bool!; 21 loadBalancerClass!; "
        "22 internalTrafficPolicy!; 23 trafficDistribution!"
    ),
    "ServicePort": (
        "1 name; 2 protocol; 6 appProtocol!; 3 port int!; 4 targetPort IntOrString; 5 nodePort int"
    ),
    "ServiceAccount": (
        "1 metadata ObjectMeta; 2 secrets []ObjectReference; "
        "3 imagePullSecrets []LocalObjectReference; 4 automountServiceAccountToken bool!"
    ),
    "ObjectReference": (
        "1 kind; 2 namespace; 3 name; 4 uid; 5 apiVersion; 6 resourceVersion; 7 fieldPath"
    ),
    # batch/v1
    "Job": "1 metadata ObjectMeta; 2 spec JobSpec",
    "JobSpec": (
        "1 parallelism int!; 2 completions int!; 3 activeDeadlineSeconds int!; "
        "7 backoffLimit int!; 12 backoffLimitPerIndex int!; 13 maxFailedIndexes int!; "
        "4 selector LabelSelector; 5 manualSelector bool!; 6 template PodTemplateSpec; "
        "8 ttlSecondsAfterFinished int!; 9 completionMode!; 10 suspend bool!; "
        "14 podReplacementPolicy!; 15 managedBy!"
    ),
    "CronJob": "1 metadata ObjectMeta; 2 spec CronJobSpec",
    "CronJobSpec": (
        "1 schedule!; 8 timeZone!; 2 startingDeadlineSeconds int!; 3 concurrencyPolicy; "
        "4 suspend bool!; 5 jobTemplate JobTemplateSpec; 6 successfulJobsHistoryLimit int!; "
        "7 failedJobsHistoryLimit int!"
    ),
    "JobTemplateSpec": "1 metadata ObjectMeta; 2 spec JobSpec",
    # rbac/v1, policy/v1, coordination/v1
    "Role": "1 metadata ObjectMeta; 2 rules []PolicyRule",
    "ClusterRole": "1 metadata ObjectMeta; 2 rules []PolicyRule; 3 aggregationRule AggregationRule",
    "PolicyRule": (
        "1 verbs []; 2 apiGroups []; 3 resources []; 4 resourceNames []; 5 nonResourceURLs []"
    ),
    "AggregationRule": "1 clusterRoleSelectors []LabelSelector",
    "RoleBinding": "1 metadata ObjectMeta; 2 subjects []Subject; 3 roleRef RoleRef",
    "ClusterRoleBinding": "1 metadata ObjectMeta; 2 subjects []Subject; 3 roleRef RoleRef",
    "RoleRef": "1 apiGroup!; 2 kind!; 3 name!",
    "Subject": "1 kind!; 2 apiGroup; 3 name!; 4 namespace",
    "PodDisruptionBudget": "1 metadata ObjectMeta; 2 spec PodDisruptionBudgetSpec",
    "PodDisruptionBudgetSpec": (
        "1 minAvailable IntOrString!; 2 selector LabelSelector; 3 maxUnavailable IntOrString!; "
        "4 unhealthyPodEvictionPolicy!"
    ),
    "Lease": "1 metadata ObjectMeta; 2 spec LeaseSpec",
    "LeaseSpec": (
        "1 holderIdentity!; 2 leaseDurationSeconds int!; 3 acquireTime MicroTime; "
        "4 renewTime MicroTime; 5 leaseTransitions int!; 6 strategy!; 7 preferredHolder!"
    ),
}

KINDS: dict[str, tuple[str, ...]] = {
    "v1": ("ConfigMap", "Namespace", "Pod", "Secret", "Service", "ServiceAccount"),
    "apps/v1": ("Deployment",),
    "batch/v1": ("CronJob", "Job"),
    "coordination.k8s.io/v1": ("Lease",),
    "policy/v1": ("PodDisruptionBudget",),
    "rbac.authorization.k8s.io/v1": ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"),
}
"""The top-level kinds by apiVersion; each is decoded as the message of its name."""

SCALARS = ("string", "int", "bool", "bytes", "Quantity", "IntOrString", "Time", "MicroTime")


@dataclass(frozen=True)
class Field:
    json: str
    """The JSON name; `-` for an embedded struct whose fields are inlined."""
    type: str
    """A scalar of `SCALARS` or a message of `MESSAGES` (of the items, for lists and maps)."""
    repeated: bool = False
    map: bool = False
    keep: bool = False
    """Zero values are kept (a pointer in Go, or no omitempty)."""


def parse(spec: str) -> Field:
    """A field as the table writes it, without its number (see the module's docstring)."""
    keep = spec.endswith("!")
    json, _, kind = spec.removesuffix("!").partition(" ")
    repeated, is_map = kind.startswith("[]"), kind.startswith("{}")
    if repeated or is_map:
        kind = kind[2:]
    return Field(json, kind or "string", repeated, is_map, keep)


def _fields(specs: str) -> dict[int, Field]:
    numbered = (spec.strip().partition(" ") for spec in specs.split(";"))
    return {int(number): parse(spec) for number, _, spec in numbered}


MESSAGES: dict[str, dict[int, Field]] = {name: _fields(specs) for name, specs in SPECS.items()}
