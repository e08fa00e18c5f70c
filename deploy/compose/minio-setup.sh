#!/bin/sh
# One-shot set-up of the compose stack's MinIO (idempotent: safe to run at every `up`):
# bucketrun's own user, the buckets of the sample service (../kubernetes/base/services/upper.yaml)
# and of the job records, and the bucket notification of its input path to the AMQP target BUCKETRUN.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null

# bucketrun presigns the jobs' transfers with its own key, not the root one.
mc admin user add local "$MINIO_BUCKETRUN_ACCESS_KEY" "$MINIO_BUCKETRUN_SECRET_KEY"
mc admin policy attach local readwrite --user "$MINIO_BUCKETRUN_ACCESS_KEY" 2>/dev/null || true

for bucket in uploads results bucketrun-records; do
    mc mb --ignore-existing "local/$bucket"
done
# Versioned input bucket: each upload gets a versionId, so each version runs exactly one Job.
mc version enable local/uploads

# The sample service's input: uploads/in/. `mc event add` refuses a duplicate rule; that is fine.
mc event add local/uploads arn:minio:sqs::BUCKETRUN:amqp --event put --prefix in/ 2>/dev/null \
    || mc event list local/uploads arn:minio:sqs::BUCKETRUN:amqp
