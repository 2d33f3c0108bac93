"""The FedAvg paper's Tables 1 and 2 as resumable studies: our rounds to target beside the paper's.

paper: the published numbers; spec: rows, learning-rate grids and budgets; cells: running the
probes and cells (plain dicts out); outputs: the files on disk, merged with earlier pieces of the
same study; markdown: tableN.md and tableN.png, from the JSON report alone; plan: a whole study,
from its checked options to its files.

Source: H. B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas, "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS 2017, PMLR 54:1273-1282
(arXiv:1602.05629), Section 3. Table 2 gives the rounds the MNIST CNN needs to reach 99% test
accuracy at C=0.1, for FedSGD (E=1, B=inf) and FedAvg at several E and B. Table 1 gives the
effect of the client fraction C (0.0 meaning one client per round) for the 2NN with E=1 (to 97%)
and the CNN with E=5 (to 99%), each with B=inf and B=10.

How the paper chose learning rates (Section 3): "The results reported here are based on
training over a sufficiently wide grid of learning rates (typically 11-13 values for eta on a
multiplicative grid of resolution 10^(1/3) or 10^(1/6)). We checked to ensure the best
learning rates were in the middle of our grids". Each table entry is then read off the best
rate's learning curve, made monotone (best accuracy so far), where it crosses the target,
interpolating linearly between rounds. The text names no MNIST learning rate; the one pair it
states, for the large-scale word LSTM, has FedSGD's rate above FedAvg's (18.0 against 9.0),
which is why our B=inf grid sits higher.

Eleven full runs per cell are out of reach on 2 cores, so each cell here probes a small grid
(4 rates, 10^(1/3) apart) for a few rounds, keeps the rate with the best test accuracy at the
end of the probe (a probe that already reached the target wins; ties go to the lower test
loss), and continues that rate's run to the target or the round budget. A probe is the first
rounds of that rate's own checkpointed run (same RunConfig apart from `rounds`), so the winner
continues without repeating them, and a table that was stopped continues where it stopped.
Fields of the base RunConfig that a table does not set (seed, limits, precision,
channels-last, ...) are passed through untouched.
"""
