// bench/plot.h — a self-made SVG of the latency curves (`--plot FILE.svg`).
//
// One panel per latency curve of a workload (e.g. thread_pingpong's rtt, oversubscribed's
// probe_rtt_x4), one line per impl: x is the percentile from 50 to 99.9 on a "nines" scale
// (-log10(1 - p)), so the tail gets as much room as the body; y is microseconds on a log scale.
// Plain SVG 1.1 text; no dependencies.
#pragma once

#include <ostream>

#include "suite.h"

namespace evh::bench {

void write_plot(std::ostream& out, const SuiteResult& result);

}  // namespace evh::bench
