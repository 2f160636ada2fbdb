"""Batches with concurrency against a real OpenBao: order, one login, the request budget, the failure report,
the pool-wide backoff and check-and-set under foreign writers.

The module runs in-process (the `modules` fixture): its pool's threads are its own, no other module runs
meanwhile, and the harness scans every run for its keys, its secret_id and the tokens it used.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from fault_proxy import FaultProxy
from pki import make_ca, make_leaf
from push_runs import push
from vault_args import approle_args


def batch_items(prefix: str, count: int) -> list[dict]:
    ca = make_ca("Concurrency CA")
    items = []
    for index in range(count):
        leaf = make_leaf(ca, f"c{index:03d}.example.com")
        items.append({"path": f"{prefix}/{index:03d}", "certificate": leaf.cert_pem, "private_key": leaf.key_pem})
    return items


def kinds(entries: list[dict]) -> Counter:
    counts: Counter = Counter()
    for entry in entries:
        path, operation = entry["request"]["path"], entry["request"]["operation"]
        if path.endswith("/login"):
            counts["login"] += 1
        elif "/data/" in path:
            counts["write" if operation in ("create", "update") else "read"] += 1
        else:
            counts[path] += 1
    return counts


def test_a_concurrent_batch_logs_in_once_keeps_input_order_and_stays_within_the_request_budget(modules, bao):
    prefix = f"certs/conc-{uuid.uuid4().hex[:8]}"
    items = batch_items(prefix, 20)
    paths = [item["path"] for item in items]

    first = push(modules, {**approle_args(bao), "certificates": items, "concurrency": 4})
    second = push(modules, {**approle_args(bao), "certificates": items, "concurrency": 4})

    assert not first.failed and not second.failed, (first.msg, second.msg)
    assert [result["path"] for result in first.result["results"]] == paths
    assert [result["path"] for result in second.result["results"]] == paths
    assert all(result["created"] for result in first.result["results"])
    assert not any(result["changed"] for result in second.result["results"])
    assert kinds(first.requests)["login"] == 1 and kinds(second.requests)["login"] == 1
    # Without an owner no mark is written: a new secret costs one read and one write; an unchanged one a read.
    assert len(first.requests) <= 2 * len(items) + 4
    assert len(second.requests) <= len(items) + 4
    assert all(bao.kv_version_numbers(path) == [1] for path in paths)
    ports = {entry["request"].get("remote_port") for entry in first.requests if "/data/" in entry["request"]["path"]}
    assert 1 < len(ports) <= 4, f"connections used by the data requests: {ports}"


def test_a_refused_item_stops_the_pool_and_the_report_matches_the_server(modules, bao):
    """Item 10 is outside what the login may write: the report says what the server holds, item by item."""
    prefix = f"certs/conc-{uuid.uuid4().hex[:8]}"
    items = batch_items(prefix, 30)
    items[10]["path"] = f"forbidden-{uuid.uuid4().hex[:8]}/x"
    paths = [item["path"] for item in items]

    run = push(modules, {**approle_args(bao), "certificates": items, "concurrency": 4})

    assert run.failed
    report = run.result
    assert report["failed_path"] == paths[10]
    assert "permission denied" in run.msg
    assert report["outcome_unknown"] == []
    done = [result["path"] for result in report["results"]]
    assert done == [path for path in paths if path in done], "results keep input order"
    assert set(paths[:7]) <= set(done), "items handed out before the refusal finish"
    assert paths[10] in report["not_written"]
    assert sorted(done + report["not_written"]) == sorted(paths), "every item is done or not written"
    for path in done:
        assert bao.kv_version_numbers(path) == [1], path
    for path in report["not_written"]:
        assert bao.kv_version_numbers(path) == [], path


@pytest.mark.parametrize("method", ["GET", "POST"], ids=["read", "write"])
def test_429_holds_back_the_whole_pool_not_only_the_request_that_got_it(modules, bao, method):
    prefix = f"certs/conc-{uuid.uuid4().hex[:8]}"
    items = batch_items(prefix, 16)
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule(method, rf"^secret/data/{prefix}/004$", status=429, times=1)
        args = {**approle_args(bao), "url": proxy.url, "certificates": items, "concurrency": 4}

        run = push(modules, args)
        hits = proxy.hits()

    assert not run.failed, run.msg
    assert all(bao.kv_version_numbers(item["path"]) == [1] for item in items)
    limited = next(hit for hit in hits if hit.status == 429)
    # The first wait is 0.5 s +/- 20 %: nothing new may leave the pool in most of it. (A hit is recorded when
    # answered; requests already on their way may be answered late on a loaded machine, hence the margin.)
    quiet = [hit for hit in hits if limited.at + 0.2 < hit.at < limited.at + 0.38]
    assert quiet == [], f"requests sent while the pool should hold back: {[(h.method, h.path) for h in quiet]}"


@pytest.mark.parametrize("concurrency", [0, -3])
def test_a_concurrency_below_one_is_refused_before_any_request(modules, bao, concurrency):
    items = batch_items(f"certs/conc-{uuid.uuid4().hex[:8]}", 2)
    args = {**approle_args(bao), "certificates": items, "concurrency": concurrency}

    run = push(modules, args)

    assert run.failed and "concurrency must be at least 1" in run.msg, run.msg
    assert run.requests == []


def test_check_and_set_keeps_every_foreign_write_while_a_concurrent_batch_runs(modules, bao):
    prefix = f"certs/conc-{uuid.uuid4().hex[:8]}"
    items = batch_items(prefix, 24)
    stop = threading.Event()
    foreign: dict[str, int] = {}

    def foreign_writer() -> None:
        for item in items:
            if stop.is_set():
                return
            status, body = bao.api("POST", f"secret/data/{item['path']}", {"data": {"foreign": item["path"]}})
            assert status == 200, body
            foreign[item["path"]] = body["data"]["version"]
            time.sleep(0.005)

    writer = threading.Thread(target=foreign_writer)
    writer.start()
    try:
        run = push(modules, {**approle_args(bao), "certificates": items, "concurrency": 8})
    finally:
        stop.set()
        writer.join()

    assert not run.failed, run.msg
    for item, result in zip(items, run.result["results"]):
        path = item["path"]
        ours = bao.kv_data(path, version=result["version"])
        assert ours["certificate"] == item["certificate"], path
        written = bao.kv_version_numbers(path)
        assert written == list(range(1, len(written) + 1)), f"{path}: a version went missing"
        if path in foreign and foreign[path] < result["version"]:
            # Our write came after the foreign one: check-and-set made us read it, and keep its field.
            assert ours.get("foreign") == path, f"{path}: the foreign write was overwritten blindly"


# -- the write-outcome matrix, in a pool --------------------------------------------------------

LOST_ANSWERS = {"500": {"status": 500}, "502": {"status": 502}, "504": {"status": 504}, "dropped": {"drop": True}}


@pytest.mark.parametrize("fault", list(LOST_ANSWERS))
def test_a_lost_answer_in_a_pool_is_resolved_by_reading_back_and_written_once(modules, bao, fault):
    prefix = f"certs/conc-{uuid.uuid4().hex[:8]}"
    items = batch_items(prefix, 8)
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{prefix}/003$", after_forward=True, times=1, **LOST_ANSWERS[fault])

        run = push(modules, {**approle_args(bao), "url": proxy.url, "certificates": items, "concurrency": 4})

    assert not run.failed, run.msg
    assert [result["created"] for result in run.result["results"]] == [True] * 8
    assert all(bao.kv_version_numbers(item["path"]) == [1] for item in items)


@pytest.mark.parametrize("fault", list(LOST_ANSWERS))
def test_an_unresolvable_write_in_a_pool_is_reported_as_unknown_and_the_report_matches_the_server(modules, bao, fault):
    prefix = f"certs/conc-{uuid.uuid4().hex[:8]}"
    items = batch_items(prefix, 8)
    paths = [item["path"] for item in items]
    with FaultProxy(bao.addr, bao.ca_cert) as proxy:
        proxy.add_rule("POST", rf"^secret/data/{prefix}/003$", after_forward=True, times=1, **LOST_ANSWERS[fault])
        proxy.add_rule("GET", rf"^secret/data/{prefix}/003$", skip=1, drop=True, times=100)

        run = push(
            modules,
            {**approle_args(bao), "url": proxy.url, "certificates": items, "concurrency": 4, "retries": 1},
        )

    assert run.failed
    report = run.result
    assert report["failed_path"] == paths[3]
    assert report["outcome_unknown"] == [paths[3]]
    done = [result["path"] for result in report["results"]]
    assert sorted(done + report["not_written"] + report["outcome_unknown"]) == sorted(paths)
    assert all(bao.kv_version_numbers(path) == [1] for path in done)
    assert all(bao.kv_version_numbers(path) == [] for path in report["not_written"])

    rerun = push(modules, {**approle_args(bao), "certificates": items, "concurrency": 4})

    assert not rerun.failed, rerun.msg
    changed = {result["path"]: result["changed_fields"] for result in rerun.result["results"]}
    # The unknown write had landed: the rerun finds its data and has nothing left to write.
    assert changed[paths[3]] == [], "the unknown write had landed: the rerun finds it"
    assert all("certificate" in changed[path] for path in report["not_written"])
    assert all(bao.kv_version_numbers(path) == [1] for path in paths)
