#include "report.h"

#include <sched.h>
#include <sys/utsname.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string_view>
#include <vector>

#include "bench_json.h"
#include "stats.h"

namespace evh::bench {
namespace {

constexpr std::string_view kEvh = "evh";
constexpr std::string_view kLegend =
    "median (min–max) over the repetitions; * = best of the row (lower is better unless the "
    "metric ends in _per_s)";
constexpr std::string_view kRatioLegend =
    "; evh/best peer = evh's median / the best peer's median (evh-exact, evh-epoll and evh-uring "
    "are evh's own variants, not peers)";

// Three significant figures is all a run-to-run spread of a few percent can support.
std::string format_value(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.3gG", v / 1e9);
  } else if (a >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.3gM", v / 1e6);
  } else if (a >= 100 || v == std::floor(v)) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (a >= 10) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else if (a >= 0.1) {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

// The table both text formats print; '*' marks the best cell.
struct Table {
  bool ratio = false;  // has the evh/best peer column
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

// evh's own variants (evh-exact, evh-epoll, evh-uring) are not peers: evh's ratio is to the
// best of the others.
bool is_evh_variant(std::string_view impl) {
  return impl.starts_with(kEvh);
}

Table build_table(const SuiteResult& r) {
  const bool ratio = std::find(r.impls.begin(), r.impls.end(), kEvh) != r.impls.end() &&
                     std::any_of(r.impls.begin(), r.impls.end(),
                                 [](const std::string& i) { return !is_evh_variant(i); });
  Table t;
  t.ratio = ratio;
  t.header = {"workload", "metric", "unit"};
  t.header.insert(t.header.end(), r.impls.begin(), r.impls.end());
  if (ratio) t.header.push_back("evh/best peer");

  // Rows arrive grouped by (workload, metric); collect each group's summaries by impl.
  for (std::size_t i = 0; i < r.rows.size();) {
    const ResultRow& first = r.rows[i];
    std::vector<std::optional<Summary>> by_impl(r.impls.size());
    for (; i < r.rows.size() && r.rows[i].workload == first.workload &&
           r.rows[i].metric == first.metric;
         ++i) {
      const auto it = std::find(r.impls.begin(), r.impls.end(), r.rows[i].impl);
      by_impl[static_cast<std::size_t>(it - r.impls.begin())] = r.rows[i].summary;
    }
    const bool higher = higher_is_better(first.metric);
    const auto better = [higher](double a, double b) { return higher ? a > b : a < b; };
    std::optional<double> best;
    std::optional<double> best_other;
    std::optional<double> evh;
    int present = 0;
    for (std::size_t k = 0; k < r.impls.size(); ++k) {
      if (!by_impl[k]) continue;
      ++present;
      const double m = by_impl[k]->median;
      if (!best || better(m, *best)) best = m;
      if (r.impls[k] == kEvh) {
        evh = m;
      } else if (!is_evh_variant(r.impls[k]) && (!best_other || better(m, *best_other))) {
        best_other = m;
      }
    }

    std::vector<std::string> row = {first.workload, first.metric, first.unit};
    for (std::size_t k = 0; k < r.impls.size(); ++k) {
      if (!by_impl[k]) {
        row.push_back("-");
        continue;
      }
      const Summary& s = *by_impl[k];
      const bool is_best = present >= 2 && s.median == *best;
      std::string cell = is_best ? "*" : "";
      cell.append(format_value(s.median)).append(" (").append(format_value(s.min));
      cell.append("–").append(format_value(s.max)).append(")");
      row.push_back(std::move(cell));
    }
    if (ratio) {
      if (evh && best_other && *best_other != 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", *evh / *best_other);
        row.push_back(buf);
      } else {
        row.push_back("-");
      }
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}

// Columns are aligned on what a terminal shows: UTF-8 continuation bytes take no column.
std::size_t display_width(std::string_view s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string markdown_cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '|' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string first_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return "unknown";
}

std::string legend(const Table& t) {
  std::string text(kLegend);
  if (t.ratio) text += kRatioLegend;
  return text;
}

// BENCHMARKS.md: an impl that is not built (or whose backend this machine cannot give) is listed
// as skipped, with the reason, not failed.
std::string skipped_note(const SuiteResult& r) {
  std::string note;
  for (const SkippedImpl& s : r.skipped_impls)
    note += "skipped: " + s.impl + " (" + s.reason + ")\n";
  return note;
}

}  // namespace

MachineInfo machine_info(const std::vector<std::string>& backends) {
  MachineInfo m;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    m.nproc = static_cast<unsigned>(CPU_COUNT(&set));
  }
  struct utsname u;
  if (uname(&u) == 0) {
    m.kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
  }
  m.cpu = first_cpu_model();
#if defined(__clang__)
  m.compiler = __VERSION__;
#elif defined(__GNUC__)
  m.compiler = std::string("gcc ") + __VERSION__;
#else
  m.compiler = "unknown";
#endif
  for (const std::string& b : backends) m.backend += (m.backend.empty() ? "" : ", ") + b;
  if (m.backend.empty()) m.backend = "none";
  return m;
}

void write_table(std::ostream& out, const SuiteResult& result) {
  const Table t = build_table(result);
  std::vector<std::size_t> width(t.header.size(), 0);
  auto widen = [&](const std::vector<std::string>& row) {
    for (std::size_t c = 0; c < row.size(); ++c)
      width[c] = std::max(width[c], display_width(row[c]));
  };
  widen(t.header);
  for (const auto& row : t.rows) widen(row);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line.append(width[c] - display_width(row[c]) + 2, ' ');
    }
    out << line << '\n';
  };
  print(t.header);
  std::vector<std::string> rule;
  for (std::size_t w : width) rule.emplace_back(w, '-');
  print(rule);
  for (const auto& row : t.rows) print(row);
  out << '\n' << legend(t) << '\n' << skipped_note(result);
}

void write_markdown(std::ostream& out, const SuiteResult& result) {
  const Table t = build_table(result);
  auto print = [&](const std::vector<std::string>& row) {
    out << '|';
    for (const std::string& cell : row) out << ' ' << markdown_cell(cell) << " |";
    out << '\n';
  };
  print(t.header);
  out << '|';
  for (std::size_t c = 0; c < t.header.size(); ++c) out << (c < 3 ? "---|" : "---:|");
  out << '\n';
  for (const auto& row : t.rows) print(row);
  out << '\n' << markdown_cell(legend(t)) << '\n' << skipped_note(result);
}

void write_json(std::ostream& out, const SuiteResult& result, const MachineInfo& machine) {
  Json doc = Json::object();
  doc["schema"] = 1;
  doc["size"] = result.size;
  doc["machine"] = {{"nproc", machine.nproc},
                    {"kernel", machine.kernel},
                    {"cpu", machine.cpu},
                    {"compiler", machine.compiler},
                    {"backend", machine.backend}};
  Json rows = Json::array();
  for (const ResultRow& row : result.rows) {
    const Summary& s = row.summary;
    // JSON has no NaN or infinity; such a row would be a bug upstream, not a measurement.
    if (!std::isfinite(s.median) || !std::isfinite(s.min) || !std::isfinite(s.max)) continue;
    rows.push_back({{"workload", row.workload},
                    {"impl", row.impl},
                    {"metric", row.metric},
                    {"unit", row.unit},
                    {"median", s.median},
                    {"min", s.min},
                    {"max", s.max},
                    {"reps", s.count}});
  }
  doc["results"] = std::move(rows);
  Json skipped = Json::array();
  for (const SkippedImpl& s : result.skipped_impls) {
    skipped.push_back({{"impl", s.impl}, {"reason", s.reason}});
  }
  doc["skipped"] = std::move(skipped);
  write_json_document(out, doc);
  out << '\n';
}

}  // namespace evh::bench
