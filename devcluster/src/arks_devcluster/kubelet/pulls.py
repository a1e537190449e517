"""Pulling an image no rule knows: it fails, as a registry without the image would.

`Pulling`, then `Failed` "Failed to pull image "x": rpc error: code = NotFound ..." and
"Error: ErrImagePull" (waiting ErrImagePull), then `BackOff` "Back-off pulling image "x""
and "Error: ImagePullBackOff" (waiting ImagePullBackOff), and again after the back-off
(10 s doubling to 5 min, scaled by the config's `backoff_scale`), for as long as the
pod lives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from arks_devcluster.kubelet.container_state import ContainerStatus, back_off
from arks_devcluster.kubelet.host import PodHost
from arks_devcluster.kubelet.images import qualified

ERR_IMAGE_PULL_HOLD = 1.0
"""Seconds in ErrImagePull before ImagePullBackOff (scaled)."""


async def fail_pulls(host: PodHost, status: ContainerStatus, event: Callable[..., None]) -> None:
    """Never returns: the image is never found."""
    image = status.image
    scale = host.config.backoff_scale
    full = qualified(image)
    error = (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{full}": '
        f'failed to resolve reference "{full}": {full}: not found'
    )
    failures = 0
    while True:
        event("Pulling", f'Pulling image "{image}"')
        event("Failed", f'Failed to pull image "{image}": {error}', warning=True)
        event("Failed", "Error: ErrImagePull", warning=True)
        status.waiting("ErrImagePull", error)
        host.sync()
        await asyncio.sleep(ERR_IMAGE_PULL_HOLD * scale)
        failures += 1
        event("BackOff", f'Back-off pulling image "{image}"')
        event("Failed", "Error: ImagePullBackOff", warning=True)
        status.waiting(
            "ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {error}'
        )
        host.sync()
        await asyncio.sleep(back_off(failures) * scale)
