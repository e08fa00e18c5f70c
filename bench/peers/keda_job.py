"""The container of the KEDA ScaledJob's Jobs: consume one message, do the work, write the output.

As KEDA's "Scaling Jobs" documentation describes a ScaledJob's Job: it starts, pulls a single event
from the queue, processes it to completion and ends. The event is MinIO's bucket notification, which
MinIO's AMQP target published and the bench's queue holds. The work is the same as the bucketrun
service's script (bench/peers/run.py, ``SCRIPT``): the object upper-cased into the output bucket, or
exit 3 when the object says ``FAIL``. That script writes its output before failing and leaves the
upload to the system around it; this Job is its own upload step and, like bucketrun by default, uploads
only after success. The message is acknowledged after the output is written (at least once: a Job that
dies first leaves it for another Job).

A Job that finds the queue empty for ``EMPTY_WAIT`` seconds ends with exit 0 and no output (KEDA
creates a Job per message it counted at its last poll; another Job may have taken it).

Its settings come from the environment, which the Job gets from a Secret (``envFrom``): ``AMQP_URL``,
``QUEUE``, ``S3_ENDPOINT``, ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``, ``OUTPUT_BUCKET``, and ``JOB_NAME``
(the downward API's ``job-name`` label), which the output's metadata records.
"""

# ruff: noqa: T201 - the container reports what it did on its output, as a Job does
from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse

import boto3
import pika

EMPTY_WAIT = 10.0
FAIL_EXIT = 3


def main() -> int:
    """Consume one message and process it; the exit code says how it went."""
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
    channel = connection.channel()
    deadline = time.monotonic() + EMPTY_WAIT
    while True:
        method, _properties, body = channel.basic_get(os.environ["QUEUE"], auto_ack=False)
        if method is not None:
            break
        if time.monotonic() > deadline:
            print(f"no message in {os.environ['QUEUE']} within {EMPTY_WAIT:.0f} s: nothing to do")
            connection.close()
            return 0
        connection.sleep(0.2)
    record = json.loads(body)["Records"][0]
    bucket = record["s3"]["bucket"]["name"]
    key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{os.environ['S3_ENDPOINT']}",
        aws_access_key_id=os.environ["S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["S3_SECRET_KEY"],
        region_name="us-east-1",
    )
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if b"FAIL" in data:
        print(f"{bucket}/{key}: failing on purpose", file=sys.stderr)
        return FAIL_EXIT  # the connection closes unacknowledged: the broker requeues the message
    name = key.rsplit("/", 1)[-1]
    metadata = {"job": os.environ.get("JOB_NAME", "")}
    s3.put_object(Bucket=os.environ["OUTPUT_BUCKET"], Key=f"out/{name}", Body=data.upper(), Metadata=metadata)
    channel.basic_ack(method.delivery_tag)
    connection.close()
    print(f"upper-cased {bucket}/{key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
