# Copyright: CertAutoPilot contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running an operation over a batch of secrets, and what a stopped batch reports. Private to the collection."""

from __future__ import annotations

import typing as t

from ansible_collections.certautopilot.vault.plugins.module_utils._errors import OutcomeUnknown, VaultCertError

Item = t.TypeVar("Item")


def run_each(
    items: t.Sequence[Item],
    operate: t.Callable[[Item], dict],
    *,
    paths: t.Sequence[str],
    batch: bool,
    noun: str,
) -> list[dict]:
    """``operate`` on every item in input order; the first failure stops the run.

    The server is unlikely to take the next item either. In a batch the error
    names the failed item and every item after it, so a caller knows what was
    not written, and carries the results so far.
    """
    results: list[dict] = []
    for index, item in enumerate(items):
        try:
            results.append(operate(item))
        except VaultCertError as exc:
            if not batch:
                raise
            raise stopped(exc, paths, index, results, noun=noun) from None
    return results


def stopped(
    exc: VaultCertError, paths: t.Sequence[str], index: int, results: list[dict], *, noun: str
) -> VaultCertError:
    """The failure of a batch at ``paths[index]``: what was written, what was not, what nobody knows."""
    failed = paths[index]
    unknown = isinstance(exc, OutcomeUnknown)
    # A write whose answer was lost may have landed: it is named as unknown, not as unwritten.
    not_written = list(paths[index + (1 if unknown else 0) :])
    message = f"batch stopped at {noun} {index + 1} of {len(paths)}, {failed}: {exc}"
    if not_written:
        message += f". Not written: {', '.join(not_written)}"
    if results:
        message += f". The {len(results)} before it were done (see results)"
    for result in results:
        result.pop("diff", None)
    return VaultCertError(
        message,
        result={
            "changed": any(result["changed"] for result in results),
            "results": results,
            "failed_path": failed,
            "not_written": not_written,
            "outcome_unknown": [failed] if unknown else [],
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
