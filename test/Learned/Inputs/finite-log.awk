# Checks optim-train's log.csv: 2 episodes, and columns 2-4 (mean f over the
# horizon, final training loss, final held-out loss) finite numbers.
NR > 1 {
  rows++
  for (i = 2; i <= 4; i++)
    if ($i !~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/) {
      printf "episode %s: column %d is '%s'\n", $1, i, $i
      bad = 1
    }
}
END {
  if (rows != 2) {
    printf "%d episodes logged, expected 2\n", rows
    bad = 1
  }
  exit bad
}
