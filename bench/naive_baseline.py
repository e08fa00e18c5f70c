"""The naive baseline: the event-to-Job script a team writes first, measured beside bucketrun.

One pika ``BlockingConnection`` consumer; per message ``json.loads``, one Job built as a dict and created
with the synchronous ``kubernetes`` client (a 409 counts as done), then the ack; afterwards each Job is
polled with ``read_namespaced_job`` until it has finished. No prefetch tuning, no concurrency, no
rendering checks, no presigned URLs: cheaper per event than bucketrun in every way but one, it waits
for each request in turn.

Run by ``bench/run_all.py`` as its own process, against a queue it filled with the same MinIO messages
and the same emulator; prints one JSON object on stdout::

    .venv/bin/python bench/naive_baseline.py --amqp-url URL --queue Q --kubeconfig K --namespace NS --count N
"""

# ruff: noqa: T201 - a benchmark prints its figures

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import pika
from kubernetes import client, config
from kubernetes.client.rest import ApiException

POLL_PAUSE = 0.5
"""Seconds between two sweeps over the unfinished Jobs (what such scripts do: sleep and look again)."""


def job_for(record: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The Job for one record, built the obvious way."""
    bucket = record["s3"]["bucket"]["name"]
    key = record["s3"]["object"]["key"]
    version = record["s3"]["object"].get("sequencer", "")
    name = (
        "naive-" + hashlib.sha1(f"{bucket}/{key}/{version}".encode(), usedforsecurity=False).hexdigest()[:20]
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"bucket": bucket, "key": key}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "run",
                            "image": "busybox:1.36",
                            "command": ["sh", "-c", "echo processing"],
                            "env": [{"name": "INPUT_KEY", "value": key}, {"name": "BUCKET", "value": bucket}],
                        }
                    ],
                }
            },
        },
    }


def dispatch(options: argparse.Namespace, batch: client.BatchV1Api) -> tuple[list[str], float, int]:
    """Consume *count* messages, one create each; (Job names, seconds from first delivery, conflicts)."""
    names: list[str] = []
    conflicts = 0
    started: list[float] = []
    connection = pika.BlockingConnection(pika.URLParameters(options.amqp_url))
    channel = connection.channel()

    def on_message(ch: Any, method: Any, _: Any, body: bytes) -> None:
        nonlocal conflicts
        if not started:
            started.append(time.perf_counter())
        for record in json.loads(body)["Records"]:
            job = job_for(record, options.namespace)
            try:
                batch.create_namespaced_job(options.namespace, job)
            except ApiException as error:
                if error.status != 409:
                    raise
                conflicts += 1
            names.append(job["metadata"]["name"])
        ch.basic_ack(method.delivery_tag)
        if len(names) >= options.count:
            ch.stop_consuming()

    channel.basic_consume(options.queue, on_message)
    channel.start_consuming()
    seconds = time.perf_counter() - started[0]
    connection.close()
    return names, seconds, conflicts


def poll_completions(names: Sequence[str], namespace: str, batch: client.BatchV1Api) -> tuple[float, int]:
    """Read every unfinished Job in turn until all have finished; (seconds, reads)."""
    pending = list(names)
    reads = 0
    started = time.perf_counter()
    while pending:
        still = []
        for name in pending:
            job = batch.read_namespaced_job(name, namespace)
            reads += 1
            if not (job.status.succeeded or job.status.failed):
                still.append(name)
        pending = still
        if pending:
            time.sleep(POLL_PAUSE)
    return time.perf_counter() - started, reads


def main(argv: Sequence[str]) -> int:
    """Dispatch, then poll; print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="bench/naive_baseline.py", description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument(
        "--no-poll", action="store_true", help="skip polling for completions (the dispatch rate only)"
    )
    options = parser.parse_args(argv)
    config.load_kube_config(config_file=options.kubeconfig)
    batch = client.BatchV1Api()
    cpu = time.process_time()
    names, seconds, conflicts = dispatch(options, batch)
    dispatch_cpu = time.process_time() - cpu
    figures: dict[str, Any] = {
        "events": len(names),
        "seconds": seconds,
        "rate": len(names) / seconds,
        "conflicts": conflicts,
        "cpu_ms_per_event": dispatch_cpu * 1000 / len(names),
    }
    if not options.no_poll:
        poll_seconds, reads = poll_completions(names, options.namespace, batch)
        figures |= {
            "completion_poll_seconds": poll_seconds,
            "completion_rate": len(names) / poll_seconds,
            "completion_reads": reads,
        }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
