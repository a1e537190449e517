"""The Kubernetes platform: arks.ai CRDs reconciled into LeaderWorkerSets, RoleBasedGroups
or Deployments, Services, PVCs, download Jobs and HTTPRoutes (kubernetes-asyncio only).

`objects` holds the names, labels and owner references every part agrees on; `render`
the pure renderers; the rest is the controller runtime (client, informers, server-side
apply, events, leader election) and `platform`, the `Platform` the core drives.
"""
