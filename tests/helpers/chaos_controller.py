"""The chaos soak's controller: another process that pauses, resumes, retries and cancels
tasks at random until a deadline, through the Python API (``autostart=False``: it only
controls, it never runs a download).

    python chaos_controller.py SEED UNTIL MAX_CANCELS TASK_ID...

``UNTIL`` is a UNIX time. Most actions are aimed at a task whose state, read a moment before,
allows them, so a refusal there means another process moved the task in between: a race,
counted as "raced". One action in seven is blind, aimed at any task as a user mistyping an
id would; its refusals are counted as "refused". Neither is fatal. Anything else a control
call raises is a finding, recorded with its message. Prints one JSON object at the end:
``actions`` (kind -> outcome -> count), ``errors``, ``cancelled`` ([task id, purged] pairs)
and ``blind`` ([kind, task id, state before, state after] of every blind call that was
accepted).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict

from downloader import DownloadManager, Settings
from storage import IllegalTransitionError, TaskState, TransitionConflictError

# How often each action is tried; a cancel only while the cancel budget lasts.
WEIGHTS = {"pause": 30, "resume": 40, "retry": 25, "cancel": 5}
TARGETS = {
    "pause": (TaskState.PENDING, TaskState.DOWNLOADING),
    "resume": (TaskState.PAUSED,),
    "retry": (TaskState.FAILED,),
    "cancel": (TaskState.PENDING, TaskState.DOWNLOADING, TaskState.PAUSED, TaskState.FAILED),
}
BLIND = 1 / 7


async def control(seed: int, until: float, max_cancels: int, ids: list[int]) -> dict:
    rng = random.Random(seed)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    errors: list[str] = []
    cancelled: list[tuple[int, bool]] = []
    blind_calls: list[tuple[str, int, str, str]] = []
    async with DownloadManager(Settings.from_env(), autostart=False) as manager:
        while time.time() < until:
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            kinds = [k for k in WEIGHTS if k != "cancel" or len(cancelled) < max_cancels]
            kind = rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
            purge = rng.random() < 0.5
            blind = rng.random() < BLIND
            pick = rng.random()
            states = {t.id: t.state for t in await manager.list()}
            candidates = sorted(i for i in ids if blind or states.get(i) in TARGETS[kind])
            if not candidates:
                outcomes[kind]["no target"] += 1
                continue
            task_id = candidates[int(pick * len(candidates))]
            try:
                if kind == "cancel":
                    after = await manager.cancel(task_id, purge=purge)
                    cancelled.append((task_id, purge))
                else:
                    after = await getattr(manager, kind)(task_id)
                outcomes[kind]["blind accepted" if blind else "done"] += 1
                if blind:
                    blind_calls.append((kind, task_id, states[task_id].value, after.state.value))
            except (IllegalTransitionError, TransitionConflictError):
                outcomes[kind]["refused" if blind else "raced"] += 1
            except Exception as e:  # a finding: report it, keep controlling
                outcomes[kind]["error"] += 1
                errors.append(f"{kind} {task_id}: {type(e).__name__}: {e}")
    return {
        "actions": {k: dict(v) for k, v in outcomes.items()},
        "errors": errors,
        "cancelled": cancelled,
        "blind": blind_calls,
    }


if __name__ == "__main__":
    seed, until, max_cancels = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    task_ids = [int(x) for x in sys.argv[4:]]
    print(json.dumps(asyncio.run(control(seed, until, max_cancels, task_ids))), flush=True)
