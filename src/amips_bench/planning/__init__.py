"""What the workflow asks for, decided before any job runs: every path and input of the run
(run_files), each job's flags and resources (jobs), the disk a run will take (disk_plan) and
its CPU time on this machine (time_plan). Imports every other part of the package."""
