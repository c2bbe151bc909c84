"""`python -m lightning_ssd reproduce`: the FastVLM paper's comparisons as a resumable plan of stages.

paper.py holds the paper's numbers; plan.py the stage runner; stages.py the plan; cli_stages.py, draft_verify.py,
exit_layers.py and sweep.py the stages; results.py, tables.py, notes.py, report_tables.py, figures.py and
report.py the report.
"""
