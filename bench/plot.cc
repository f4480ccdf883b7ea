#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace evh::bench {
namespace {

constexpr double kPanelWidth = 720;
constexpr double kPanelHeight = 300;
constexpr double kLeft = 70;    // room for the y labels
constexpr double kRight = 110;  // room for the legend
constexpr double kTop = 36;     // room for the title
constexpr double kBottom = 44;  // room for the x labels
constexpr double kGap = 16;
constexpr double kFirstPercentile = 50;
constexpr double kLastPercentile = 99.9;
constexpr double kXTicks[] = {50, 75, 90, 95, 99, 99.5, 99.9};
// Anything below a nanosecond is a rounding artefact; it would stretch the log axis.
constexpr double kFloorMicros = 1e-3;

// The "nines" of a percentile: 90 -> 1, 99 -> 2, 99.9 -> 3.
double nines(double pct) {
  return -std::log10(1 - pct / 100);
}

std::string color_of(std::string_view impl, std::size_t index) {
  if (impl == "evh") return "#d62728";
  if (impl == "raw") return "#555555";
  static constexpr const char* kPalette[] = {"#1f77b4", "#2ca02c", "#9467bd",
                                             "#ff7f0e", "#8c564b", "#17becf"};
  return kPalette[index % std::size(kPalette)];
}

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

struct Panel {
  std::string workload;
  std::string curve;
  std::vector<const CurveRow*> lines;
};

std::vector<Panel> panels_of(const SuiteResult& r) {
  std::vector<Panel> panels;
  for (const CurveRow& c : r.curves) {
    auto it = std::find_if(panels.begin(), panels.end(), [&](const Panel& p) {
      return p.workload == c.workload && p.curve == c.curve;
    });
    if (it == panels.end()) it = panels.insert(panels.end(), Panel{c.workload, c.curve, {}});
    it->lines.push_back(&c);
  }
  return panels;
}

void write_panel(std::ostream& out, const Panel& panel, const std::vector<std::string>& impls,
                 double top) {
  const double x0 = kLeft;
  const double x1 = kPanelWidth - kRight;
  const double y0 = top + kTop;
  const double y1 = top + kPanelHeight - kBottom;

  double lo = std::numeric_limits<double>::max();
  double hi = 0;
  for (const CurveRow* line : panel.lines) {
    for (const CurvePoint& p : line->points) {
      lo = std::min(lo, std::max(p.micros, kFloorMicros));
      hi = std::max(hi, std::max(p.micros, kFloorMicros));
    }
  }
  double log_lo = std::floor(std::log10(lo));
  double log_hi = std::ceil(std::log10(hi));
  if (log_hi <= log_lo) log_hi = log_lo + 1;

  const auto x_of = [&](double pct) {
    return x0 + (nines(pct) - nines(kFirstPercentile)) /
                    (nines(kLastPercentile) - nines(kFirstPercentile)) * (x1 - x0);
  };
  const auto y_of = [&](double micros) {
    const double l = std::log10(std::max(micros, kFloorMicros));
    return y1 - (l - log_lo) / (log_hi - log_lo) * (y1 - y0);
  };

  out << "<text x=\"" << num(x0) << "\" y=\"" << num(top + 22)
      << "\" font-size=\"15\" font-weight=\"bold\">" << escape(panel.workload) << " — "
      << escape(panel.curve) << "</text>\n";
  out << "<rect x=\"" << num(x0) << "\" y=\"" << num(y0) << "\" width=\"" << num(x1 - x0)
      << "\" height=\"" << num(y1 - y0) << "\" fill=\"none\" stroke=\"#999\"/>\n";

  // A few decades get 1-2-5 grid lines; many decades get one line per decade.
  const bool fine = log_hi - log_lo <= 2;
  for (double d = log_lo; d <= log_hi; ++d) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (!fine && m != 1.0) continue;
      const double v = m * std::pow(10.0, d);
      if (std::log10(v) > log_hi + 1e-9) break;
      const double y = y_of(v);
      out << "<line x1=\"" << num(x0) << "\" y1=\"" << num(y) << "\" x2=\"" << num(x1) << "\" y2=\""
          << num(y) << "\" stroke=\"#e5e5e5\"/>\n";
      out << "<text x=\"" << num(x0 - 6) << "\" y=\"" << num(y + 4)
          << "\" font-size=\"11\" text-anchor=\"end\">" << tick_label(v) << "</text>\n";
    }
  }
  for (double pct : kXTicks) {
    const double x = x_of(pct);
    out << "<line x1=\"" << num(x) << "\" y1=\"" << num(y0) << "\" x2=\"" << num(x) << "\" y2=\""
        << num(y1) << "\" stroke=\"#e5e5e5\"/>\n";
    out << "<text x=\"" << num(x) << "\" y=\"" << num(y1 + 16)
        << "\" font-size=\"11\" text-anchor=\"middle\">" << tick_label(pct) << "</text>\n";
  }
  out << "<text x=\"" << num((x0 + x1) / 2) << "\" y=\"" << num(y1 + 34)
      << "\" font-size=\"12\" text-anchor=\"middle\">percentile</text>\n";
  out << "<text x=\"16\" y=\"" << num((y0 + y1) / 2) << "\" font-size=\"12\" "
      << "text-anchor=\"middle\" transform=\"rotate(-90 16 " << num((y0 + y1) / 2)
      << ")\">µs</text>\n";

  double legend_y = y0 + 10;
  for (const CurveRow* line : panel.lines) {
    const auto at = std::find(impls.begin(), impls.end(), line->impl);
    const std::string color = color_of(line->impl, static_cast<std::size_t>(at - impls.begin()));
    out << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
    for (const CurvePoint& p : line->points) {
      if (p.percentile < kFirstPercentile || p.percentile > kLastPercentile) continue;
      out << num(x_of(p.percentile)) << ',' << num(y_of(p.micros)) << ' ';
    }
    out << "\"/>\n";
    out << "<line x1=\"" << num(x1 + 12) << "\" y1=\"" << num(legend_y) << "\" x2=\""
        << num(x1 + 36) << "\" y2=\"" << num(legend_y) << "\" stroke=\"" << color
        << "\" stroke-width=\"2\"/>\n";
    out << "<text x=\"" << num(x1 + 42) << "\" y=\"" << num(legend_y + 4) << "\" font-size=\"12\">"
        << escape(line->impl) << "</text>\n";
    legend_y += 18;
  }
}

}  // namespace

void write_plot(std::ostream& out, const SuiteResult& result) {
  const std::vector<Panel> panels = panels_of(result);
  const double height =
      panels.empty() ? 60 : static_cast<double>(panels.size()) * (kPanelHeight + kGap);
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << num(kPanelWidth)
      << "\" height=\"" << num(height) << "\" viewBox=\"0 0 " << num(kPanelWidth) << ' '
      << num(height) << "\" font-family=\"sans-serif\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (panels.empty()) {
    out << "<text x=\"20\" y=\"35\" font-size=\"14\">no latency workload in this run</text>\n";
  }
  double top = 0;
  for (const Panel& p : panels) {
    write_panel(out, p, result.impls, top);
    top += kPanelHeight + kGap;
  }
  out << "</svg>\n";
}

}  // namespace evh::bench
