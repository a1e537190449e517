"""arks_engine_sim: an OpenAI-compatible vLLM stand-in with a batching, latency and
KV-cache model (see docs/engine-sim.md).

Public API for other code in this repository (tests, benchmarks, the CLI's local stack):
`Simulator` (run one in-process), `SimSettings` (every option) and `parse_arguments`
(vLLM-style argv to settings). Other services start the `arks-engine-sim` console
script as a subprocess instead of importing this package.
"""

from arks_engine_sim.arguments import ParsedArguments, parse_arguments
from arks_engine_sim.serving import Simulator
from arks_engine_sim.settings import SimSettings

__all__ = ["ParsedArguments", "SimSettings", "Simulator", "parse_arguments"]
