"""``crm-scorer bench --challenger DIR``: one worker with a challenger, on the same preloaded topic.

A model store of the run's own holds the committed set (active) and the set in ``DIR``; ``crm-scorer models
shadow`` names it the challenger on a control topic of the run's own, and ``crm-scorer run`` follows that store,
so the worker scores the challenger beside the champion and publishes its scores to a shadow topic of the run's
own. The worker takes the challenger between two of its first batches (when its follower reads the control
topic), so the first results may be the champion's alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from models.config import DEFAULT_ARTIFACTS_DIR
from models.store import ModelStore
from producer_tools.bench.probe import Lanes
from producer_tools.servers.broker import BrokerError


def challenger_env(bootstrap: str, lanes: Lanes, challenger: Path, workdir: Path) -> dict[str, str]:
    """The scorer's environment for ``lanes`` with the set in ``challenger`` as its challenger (published).

    Raises:
        BrokerError: the set could not be added or ``crm-scorer models shadow`` failed (its output is in the
            message).
    """
    store = ModelStore(workdir / "challenger-store")
    first, second = store.add(DEFAULT_ARTIFACTS_DIR), store.add(challenger)
    store.activate(first, list(store.manifest(first).models), "crm-scorer bench", "bench --challenger: the champion")
    env = {
        "CRM_SCORER_MODELS__STORE_DIR": str(store.root),
        "CRM_SCORER_MODELS__CONTROL_TOPIC": f"{lanes.group}-models",
        "CRM_SCORER_MODELS__SHADOW_TOPIC": f"{lanes.output}-shadow",
        "CRM_SCORER_TOPICS__OUTPUT": lanes.output,
    }
    args = ["models", "--bootstrap-servers", bootstrap, "shadow", second, "--reason", "bench --challenger"]
    done = subprocess.run(
        [sys.executable, "-m", "consumer.commands.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | env,
    )
    if done.returncode != 0:
        raise BrokerError(f"crm-scorer models shadow failed ({done.returncode}): {done.stderr[-2000:]}")
    return env
