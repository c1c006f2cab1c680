# Training of every model of the grid (results/{dataset}/models/{run}/). Under a walltime cap
# (cluster.max_runtime_minutes) a run whose estimate exceeds it trains as a chain of jobs:
# train_segment k continues from segment k - 1 to its step and saves a checkpoint, and train,
# the last, writes the model (amips_bench.planning.jobs.Jobs.train_segments).


rule train:
    input:
        unpack(lambda w: RUN.train_inputs(w.dataset, w.run)),
    output:
        model=DATASET_FILES.model("{run}"),
        history=DATASET_FILES.history("{run}"),
        questions=DATASET_FILES.questions("{run}"),
        metrics=DATASET_FILES.metrics("{run}"),
    log:
        RESULTS.log("{dataset}", "train", "{run}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "train", "{run}")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: JOBS.train_mem_mb(w.dataset),
        runtime=lambda w: JOBS.train_minutes(w.dataset, w.run),
        gpu=config["gpu_per_job"],
    params:
        run=lambda w: JOBS.run_cli(w.run),
        train=lambda w: JOBS.train_cli(w.dataset),
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
        out=lambda w, output: folder(output.model),
        device=DEVICE,
        # how the job runs (threads, execution keys, its time budget, the segment it continues
        # from): read through a function of threads, so none of it is a params trigger
        execution=lambda w, input, threads: training_execution(w, input, threads),
    shell:
        "amips-bench train --dataset-dir {params.dataset_dir} --out {params.out} {params.run} "
        "{params.train} --device {params.device} {params.execution} > {log} 2>&1"


use rule train as train_segment with:
    input:
        unpack(lambda w: RUN.train_inputs(w.dataset, w.run, int(w.k))),
    output:
        temp(DATASET_FILES.segment("{run}", "{k}")),
    log:
        RESULTS.log("{dataset}", "train", "{run}_segment{k}"),
    benchmark:
        RESULTS.benchmark("{dataset}", "train", "{run}_segment{k}")
    params:
        run=lambda w: JOBS.run_cli(w.run),
        train=lambda w: JOBS.train_cli(w.dataset),
        dataset_dir=lambda w: str(RUN.of(w.dataset).root),
        out=lambda w, output: folder(output[0]),
        device=DEVICE,
        execution=lambda w, input, output, threads: training_execution(w, input, threads)
        + f" --until-step {JOBS.segment_until(w.dataset, w.run, int(w.k))} --segment-out {output[0]}",
