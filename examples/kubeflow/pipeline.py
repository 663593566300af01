r"""A Kubeflow pipeline over Provender: training set, model, online ingestion, consistency check.

    python examples/kubeflow/pipeline.py compile pipeline.yaml      # for a Kubeflow Pipelines cluster
    python examples/kubeflow/pipeline.py run --config repo/provender.yaml --entities repo/entities.parquet \\
        --start 2026-11-01 --at 2026-11-20T00:00:00

`run` executes the pipeline here with kfp.local, no cluster: each step a local process, or with
`--runner docker` each step a container of the steps' image (`make image-kfp`; Docker, or podman's
API socket through DOCKER_HOST), the repository's folder mounted at the same path. Prepare a
repository to run it on with prepare.py (same folder). Steps:

1. historical_retrieval: the point-in-time correct training set of the entity rows (with labels);
2. train_model: a scikit-learn logistic regression on it (accuracy out, model artifact);
3. offline_to_online_ingestion: the latest values with start <= event time < at, to the online store;
4. consistency_check (after 3): the online values equal the training set's rows stamped `at`.
"""

# No `from __future__ import annotations`: kfp reads the annotations as objects.
import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kfp import compiler, dsl, local
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from provender.kfp.components import BASE_IMAGE, consistency_check, historical_retrieval, offline_to_online_ingestion

if TYPE_CHECKING:
    import docker

FEATURES = ["driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:avg_daily_trips"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train_model(training_set: Input[Dataset], label: str, model: Output[Model], metrics: Output[Metrics]) -> float:
    """Train a logistic regression on the training set's feature columns; return its accuracy."""
    import pickle

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_parquet(training_set.path)
    columns = sorted(name for name in frame.columns if "__" in name)  # <table>__<feature>
    inputs = frame[columns].astype(float).fillna(0.0)
    classifier = LogisticRegression(max_iter=1000).fit(inputs, frame[label])
    accuracy = float(classifier.score(inputs, frame[label]))
    with open(model.path, "wb") as out:
        pickle.dump({"model": classifier, "columns": columns}, out)
    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("rows", len(frame))
    return accuracy


@dsl.pipeline(name="provender-training", description="Training set, model, online ingestion, consistency check")
def training_pipeline(
    entity_source_uri: str,
    start: str,
    at: str,
    config_path: str = "",
    label: str = "label",
    table: str = "driver_stats",
    feature_refs: list = FEATURES,  # type: ignore[type-arg]
) -> None:
    """Build a training set, train on it, ingest online, and check training/serving consistency."""
    retrieval = historical_retrieval(
        feature_refs=feature_refs, entity_source_uri=entity_source_uri, config_path=config_path
    )
    train_model(training_set=retrieval.outputs["dataset"], label=label)
    ingestion = offline_to_online_ingestion(table=table, start=start, end=at, config_path=config_path)
    consistency_check(
        feature_refs=feature_refs, training_set=retrieval.outputs["dataset"], at=at, config_path=config_path
    ).after(ingestion)


def docker_runner(folders: list[Path], network: str, user: str) -> local.DockerRunner:
    """kfp.local's DockerRunner, with ``folders`` bind-mounted at the same paths in each step's container.

    The steps run as ``user`` ("": the image's, uid 10001), who must be able to write the folders.

    Each container is removed after kfp read its exit code, not auto-removed: podman's Docker API
    (4.3) answers 500 rather than 404 for a container already removed, which kfp's wait does not
    expect, so ``run_docker_container`` is replaced by the same run without ``auto_remove``.
    """
    from docker.types import Mount
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = _run_container
    mounts = [Mount(target=str(path), source=str(path), type="bind") for path in dict.fromkeys(folders)]
    # A step's command replaces the image's entrypoint (`provender`) in Kubernetes, not in Docker: clear it.
    options = {"user": user} if user else {}
    return local.DockerRunner(mounts=mounts, network_mode=network, entrypoint=[""], **options)


def _run_container(
    client: "docker.DockerClient", image: str, command: list[str], volumes: dict[str, object], **run_args: object
) -> int:
    container = client.containers.run(image=image, command=command, detach=True, volumes=volumes, **run_args)
    try:
        for line in container.logs(stream=True):
            print(line.decode(), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


def main(argv: list[str]) -> int:
    """Compile the pipeline, or run it locally with kfp.local."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    compile_ = commands.add_parser("compile", help="write the pipeline YAML")
    compile_.add_argument("output", type=Path)
    run = commands.add_parser("run", help="run the pipeline here with kfp.local (processes or containers)")
    run.add_argument("--config", required=True, help="provender.yaml of the repository")
    run.add_argument("--entities", required=True, help="Parquet entity source with a label column")
    run.add_argument("--start", required=True, help="ingestion window start (ISO-8601)")
    run.add_argument("--at", required=True, help="the time T: ingestion window end and consistency time")
    run.add_argument("--pipeline-root", default="./kfp-local", help="where kfp.local writes artifacts")
    run.add_argument(
        "--runner",
        choices=["subprocess", "docker"],
        default="subprocess",
        help="each step a local process, or a container of the steps' image (DOCKER_HOST: the API socket)",
    )
    run.add_argument("--network", default="host", help="--runner docker: the containers' network (default: the host's)")
    run.add_argument(
        "--user", default="", help="--runner docker: uid[:gid] the steps run as (default: the image's, 10001)"
    )
    args = parser.parse_args(argv)
    if args.command == "compile":
        compiler.Compiler().compile(training_pipeline, str(args.output))
        print(f"wrote {args.output}")
        return 0
    config, entities, root = (Path(path).resolve() for path in (args.config, args.entities, args.pipeline_root))
    if args.runner == "docker":  # the steps read the repository and write the artifacts at the host's paths
        root.mkdir(parents=True, exist_ok=True)
        runner = docker_runner([config.parent, entities.parent], args.network, args.user)
    else:
        runner = local.SubprocessRunner(use_venv=False)
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
    training_pipeline(entity_source_uri=str(entities), start=args.start, at=args.at, config_path=str(config))
    print("pipeline provender-training: SUCCEEDED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
