"""The benchmark: a grid of selection methods x ratios x SSL x datasets x label fractions x seeds, at equal compute."""
