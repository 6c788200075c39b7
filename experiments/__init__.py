"""Proofs: scripts that measure a claim this project makes (the A/B gate's verdicts, the efficiency
limit, step detection over a history, the journal's durability, fidelity's references), one folder
per subject with the outputs they wrote. Run from the checkout: `python -m experiments.<subject>.proof`."""
