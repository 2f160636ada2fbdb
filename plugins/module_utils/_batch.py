# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running an operation over a batch of secrets, and what a stopped batch reports. Private to the collection."""

from __future__ import annotations

import itertools
import typing as t
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ansible_collections.certautopilot.vault.plugins.module_utils import _health, _kv2
from ansible_collections.certautopilot.vault.plugins.module_utils._client import VaultClient
from ansible_collections.certautopilot.vault.plugins.module_utils._errors import OutcomeUnknown, VaultCertError

Item = t.TypeVar("Item")
# In-flight requests of one run by default: kind to a shared server, and most of what distance costs.
DEFAULT_CONCURRENCY = 8


def check_concurrency(concurrency: int) -> int:
    if concurrency < 1:
        raise VaultCertError(f"concurrency must be at least 1 (1 = one item after another), got {concurrency}")
    return concurrency


def run_on_mount(
    client: VaultClient,
    items: t.Sequence[Item],
    operate: t.Callable[[VaultClient, Item], dict],
    *,
    mount: str,
    capabilities: t.Callable[[], t.Mapping[str, t.Sequence[str]]] | None,
    batch: bool,
    noun: str,
    concurrency: int = 1,
) -> list[dict]:
    """What every writer does with its items over one login: check the mount once (not at all for an empty
    batch), then - given ``capabilities``, the API paths each item needs and what on them - the token's
    capabilities on every path before any write, then ``operate`` on each item (see run_each)."""
    if not items:
        return []
    _kv2.check_mount(client, mount)
    if capabilities is not None:
        _health.require_capabilities(client, capabilities())
    return run_each(
        items,
        lambda item: operate(client, item),
        paths=[item.path for item in items],
        batch=batch,
        noun=noun,
        concurrency=concurrency,
    )


def run_each(
    items: t.Sequence[Item],
    operate: t.Callable[[Item], dict],
    *,
    paths: t.Sequence[str],
    batch: bool,
    noun: str,
    concurrency: int = 1,
) -> list[dict]:
    """``operate`` on every item, at most ``concurrency`` at a time; results in input order.

    The first failure stops handing out items - the server is unlikely to take the next
    ones either - and lets those in flight finish. In a batch the error then names the
    failed item, what was certainly not written and what may or may not have been, and
    carries the results of every item that was done.
    """
    outcomes = _run_in_order(items, operate) if concurrency <= 1 else _run_in_pool(items, operate, concurrency)
    failures = [(index, outcome) for index, outcome in outcomes.items() if isinstance(outcome, VaultCertError)]
    if not failures:
        return [outcomes[index] for index in range(len(items))]
    if not batch:
        raise failures[0][1]
    raise stopped(outcomes, paths, noun=noun) from None


Outcomes = t.Dict[int, t.Any]  # item index -> its result, or the VaultCertError it failed with


def _run_in_order(items: t.Sequence[Item], operate: t.Callable[[Item], dict]) -> Outcomes:
    outcomes: Outcomes = {}
    for index, item in enumerate(items):
        outcomes[index] = _outcome(operate, item)
        if isinstance(outcomes[index], VaultCertError):
            break
    return outcomes


def _outcome(operate: t.Callable[[Item], dict], item: Item) -> t.Any:
    """The item's result, or the error it failed with.

    Any other exception is a bug met part-way: the item may have been written already, so it is
    an unknown outcome, and the batch's report of every other item is kept.
    """
    try:
        return operate(item)
    except VaultCertError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - reported per item; the module's last resort would lose the report
        return OutcomeUnknown(f"unexpected error ({type(exc).__name__}): {exc}", answered=False)


def _run_in_pool(items: t.Sequence[Item], operate: t.Callable[[Item], dict], concurrency: int) -> Outcomes:
    """A small pool over the client's one login; an item is handed out only while nothing has failed."""
    outcomes: Outcomes = {}
    upcoming = iter(enumerate(items))
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)) or 1) as pool:
        in_flight = {
            pool.submit(_outcome, operate, item): index for index, item in itertools.islice(upcoming, concurrency)
        }
        while in_flight:
            done, _running = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                outcomes[in_flight.pop(future)] = future.result()
            if any(isinstance(outcome, VaultCertError) for outcome in outcomes.values()):
                continue
            for index, item in itertools.islice(upcoming, len(done)):
                in_flight[pool.submit(_outcome, operate, item)] = index
    return outcomes


def stopped(outcomes: Outcomes, paths: t.Sequence[str], *, noun: str) -> VaultCertError:
    """The failure of a batch: what was done, what was certainly not written, what nobody knows.

    A write whose answer was lost may have landed: it is named as unknown, not as unwritten.
    Items never handed out were not written either.
    """
    failures = sorted((index, outcome) for index, outcome in outcomes.items() if isinstance(outcome, VaultCertError))
    first, error = failures[0]
    unknown = [paths[index] for index, outcome in failures if isinstance(outcome, OutcomeUnknown)]
    not_written = [
        path
        for index, path in enumerate(paths)
        if index not in outcomes or (isinstance(outcomes[index], VaultCertError) and path not in unknown)
    ]
    results = [outcomes[index] for index in sorted(outcomes) if not isinstance(outcomes[index], VaultCertError)]
    message = f"batch stopped at {noun} {first + 1} of {len(paths)}, {paths[first]}: {error}"
    for index, other in failures[1:]:
        message += f". {noun.capitalize()} {index + 1}, {paths[index]}, failed too: {other}"
    if not_written:
        message += f". Not written: {', '.join(not_written)}"
    if results:
        message += f". {len(results)} {noun}(s) were done (see results)"
    for result in results:
        result.pop("diff", None)
    return VaultCertError(
        message,
        result={
            "changed": any(result["changed"] for result in results),
            "results": results,
            "failed_path": paths[first],
            "not_written": not_written,
            "outcome_unknown": unknown,
        },
    )


def refuse_repeated_paths(paths: t.Iterable[str], *, option: str) -> None:
    """Two items for one secret would race each other inside one run."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise VaultCertError(f"invalid path {path!r}: it appears twice in {option}")
        seen.add(path)


def run_result(results: list[dict], *, batch: bool) -> dict:
    """The module's return: the single shape, or ``results`` (and one diff per item) for a batch."""
    if not batch:
        return results[0]
    diffs = [result.pop("diff") for result in results if "diff" in result]
    outcome = {"changed": any(result["changed"] for result in results), "results": results}
    if diffs:
        outcome["diff"] = diffs
    return outcome
