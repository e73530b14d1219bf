"""The benchmark's per-file cost counting: Azurite access-log lines and azmlinfsrv request lines by kind."""

from __future__ import annotations

from benchmarks.costs import endpoint_calls, pipeline_requests, storage_operation, storage_operations

# Lines as Azurite (morgan "common") and azureml-inference-server-http write them.
AZURITE_LOG = """\
Azurite Blob service is successfully listening at http://127.0.0.1:10000
127.0.0.1 - - [06/Dec/2026:07:40:01 +0000] "PUT /devstoreaccount1/input/a%2Fb.csv HTTP/1.1" 201 -
127.0.0.1 - - [06/Dec/2026:07:40:01 +0000] "GET /devstoreaccount1/input?restype=container&comp=list&maxresults=500 HTTP/1.1" 200 -
127.0.0.1 - - [06/Dec/2026:07:40:01 +0000] "HEAD /devstoreaccount1/azure-webjobs-hosts/blobreceipts/x HTTP/1.1" 404 -
127.0.0.1 - - [06/Dec/2026:07:40:01 +0000] "PUT /devstoreaccount1/ledger/requests/r.json HTTP/1.1" 412 215
127.0.0.1 - - [06/Dec/2026:07:40:01 +0000] "PUT /devstoreaccount1/output/a.csv?comp=blocklist HTTP/1.1" 201 -
127.0.0.1 - - [06/Dec/2026:07:40:02 +0000] "PUT /devstoreaccount1/azure-webjobs-hosts/blobreceipts/x?comp=metadata HTTP/1.1" 200 -
"""  # noqa: E501


def test_each_access_log_line_counts_once_by_container_and_operation_and_failures_apart() -> None:
    counts = storage_operations(AZURITE_LOG)
    assert counts == {
        "input: Put/Copy Blob": 1,
        "input: List Blobs": 1,
        "azure-webjobs-hosts: Get Blob Properties": 1,
        "azure-webjobs-hosts: Get Blob Properties -> 404": 1,
        "ledger: Put/Copy Blob": 1,
        "ledger: Put/Copy Blob -> 412": 1,
        "output: Put Block List": 1,
        "azure-webjobs-hosts: Set Blob Metadata": 1,
    }


def test_operations_are_named_as_the_rest_api_names_them() -> None:
    assert storage_operation("GET", "/devstoreaccount1/ledger/requests/x.json") == "ledger: Get Blob"
    assert storage_operation("DELETE", "/devstoreaccount1/ledger/inflight/x") == "ledger: Delete Blob"
    assert storage_operation("PUT", "/devstoreaccount1/output/x?comp=block&blockid=AA") == "output: Put Block"
    assert storage_operation("PUT", "/devstoreaccount1/output/x?comp=lease") == "output: Lease Blob"
    assert storage_operation("PUT", "/devstoreaccount1/input?restype=container") == "input: PUT Container"
    assert storage_operation("GET", "/devstoreaccount1?comp=list") == "(account): GET list"


def test_the_hosts_checkpoint_is_named_apart_from_its_receipts() -> None:
    checkpoint = "/devstoreaccount1/azure-webjobs-hosts/eventgrid-checkpoints/h/Host.Functions.submit_blob"
    assert storage_operation("PUT", checkpoint) == "azure-webjobs-hosts/eventgrid-checkpoints: Put/Copy Blob"
    receipt = "/devstoreaccount1/azure-webjobs-hosts/blobreceipts/h/Host.Functions.submit_blob/e/input/a.csv"
    assert storage_operation("PUT", receipt) == "azure-webjobs-hosts: Put/Copy Blob"


def test_the_pipelines_requests_leave_out_the_benchmarks_own_and_count_the_hosts_timed_ones() -> None:
    checkpoint = "/devstoreaccount1/azure-webjobs-hosts/eventgrid-checkpoints/h/Host.Functions.submit_blob"
    log = AZURITE_LOG + f'127.0.0.1 - - [06/Dec/2026:07:40:03 +0000] "PUT {checkpoint} HTTP/1.1" 201 -\n'
    # 7 requests: the upload is the benchmark's, a 404 or 412 is counted once, as its operation; the input
    # listing and the checkpoint are the host's timed ones
    assert pipeline_requests(storage_operations(log)) == (6, 2)


def test_endpoint_calls_are_read_from_the_inference_servers_request_lines() -> None:
    log = (
        "2026-12-06 07:40:01,000 I [12] azmlinfsrv - POST /score 202 3.100ms 120\n"
        "2026-12-06 07:40:01,000 I [12] azmlinfsrv - POST /score?verbose=true 429 1.000ms 80\n"
        "2026-12-06 07:40:01,000 I [12] azmlinfsrv - GET / 200 0.500ms 7\n"
        "scored 100 rows of POST /score\n"
    )
    assert endpoint_calls(log) == {"POST /score 202": 1, "POST /score 429": 1}
