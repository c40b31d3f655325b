"""`twin sweep`: what-if grids of variants and replications, with their report."""
