#include "bench_json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "perf_compare.h"
#include "report.h"

namespace evh::bench {
namespace {

SuiteResult sample_result() {
  SuiteResult r;
  r.impls = {"evh", "raw"};
  r.size = "quick";
  r.rows.push_back({"thread_pingpong", "evh", "rtt_p50_us", "us", {1.25, 1.0, 3.5, 3}});
  r.rows.push_back({"thread_pingpong", "raw", "rtt_p50_us", "us", {49.4, 45.9, 52.2, 3}});
  r.rows.push_back({"port_flood", "evh", "msgs_per_s", "msgs/s", {2.4e7, 2.08e7, 2.42e7, 3}});
  r.rows.push_back({"odd \"name\"\\", "raw", "x", "count", {0.1, 0.1, 0.30000000000000004, 1}});
  r.skipped_impls.push_back({"evh-uring", "io_uring unavailable"});
  return r;
}

// What write_json writes, the reader reads back: every row, exactly (shortest round-trip
// numbers), with the run's size and machine.
TEST(BenchJson, WriterReaderRoundTrip) {
  const SuiteResult r = sample_result();
  MachineInfo m;
  m.nproc = 2;
  m.kernel = "Linux 6.1";
  m.cpu = "a \"quoted\" cpu\t";
  m.compiler = "gcc";
  m.backend = "epoll";
  std::ostringstream out;
  write_json(out, r, m);

  const Json doc = parse_json(out.str());
  EXPECT_EQ(doc["machine"]["cpu"], m.cpu);
  EXPECT_EQ(doc["machine"]["nproc"], 2);
  EXPECT_EQ(doc["machine"]["backend"], "epoll");
  ASSERT_EQ(doc["skipped"].size(), 1u);
  EXPECT_EQ(doc["skipped"][0]["impl"], "evh-uring");
  EXPECT_EQ(doc["skipped"][0]["reason"], "io_uring unavailable");
  const BenchRun run = bench_run_from_json(doc);
  EXPECT_EQ(run.size, "quick");
  ASSERT_EQ(run.rows.size(), r.rows.size());
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    EXPECT_EQ(run.rows[i].workload, r.rows[i].workload);
    EXPECT_EQ(run.rows[i].impl, r.rows[i].impl);
    EXPECT_EQ(run.rows[i].metric, r.rows[i].metric);
    EXPECT_EQ(run.rows[i].unit, r.rows[i].unit);
    EXPECT_EQ(run.rows[i].median, r.rows[i].summary.median);
    EXPECT_EQ(run.rows[i].min, r.rows[i].summary.min);
    EXPECT_EQ(run.rows[i].max, r.rows[i].summary.max);
    EXPECT_EQ(run.rows[i].reps, static_cast<int>(r.rows[i].summary.count));
  }
}

// The committed layout: one result row per line, so that a baseline diff shows the cells that
// moved; the keys keep their order.
TEST(BenchJson, DocumentLayoutIsOneRowPerLine) {
  std::ostringstream out;
  write_json(out, sample_result(), MachineInfo{});
  const std::string text = out.str();
  std::size_t row_lines = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("\"workload\"") != std::string::npos) {
      ++row_lines;
      EXPECT_NE(line.find("\"reps\""), std::string::npos) << line;
    }
  }
  EXPECT_EQ(row_lines, sample_result().rows.size());
  EXPECT_LT(text.find("\"schema\""), text.find("\"machine\""));
  EXPECT_LT(text.find("\"machine\""), text.find("\"results\""));
}

// A generic document written out and parsed again has the same values, including non-ASCII
// strings, nested empty containers, and NaN written as null.
TEST(BenchJson, GenericDocumentRoundTrip) {
  const std::string text =
      R"({"a": [1, -2.5e-3, true, false, null, "\u00e9\ud83d\ude00"], "b": {"c": {}}, "d": []})";
  Json v = parse_json(text);
  v["nan"] = std::numeric_limits<double>::quiet_NaN();
  std::ostringstream out;
  write_json_document(out, v);
  const Json w = parse_json(out.str());
  EXPECT_EQ(w["a"][1].get<double>(), -2.5e-3);
  EXPECT_TRUE(w["a"][2].get<bool>());
  EXPECT_TRUE(w["a"][4].is_null());
  EXPECT_EQ(w["a"][5].get<std::string>(), "\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_TRUE(w["b"]["c"].is_object() && w["b"]["c"].empty());
  EXPECT_TRUE(w["d"].is_array() && w["d"].empty());
  EXPECT_TRUE(w["nan"].is_null());
}

TEST(BenchJson, MalformedInputThrows) {
  EXPECT_THROW(parse_json("{"), JsonError);
  EXPECT_THROW(parse_json("{\"a\": 1,}"), JsonError);
  EXPECT_THROW(parse_json("[1] 2"), JsonError);
  EXPECT_THROW(parse_json("\"\x01\""), JsonError);
  EXPECT_THROW(parse_json("nul"), JsonError);
}

// A results document of the wrong shape is a JsonError naming what is wrong, not a crash.
TEST(BenchJson, WrongShapeThrowsJsonError) {
  EXPECT_THROW(bench_run_from_json(parse_json(R"({"results": []})")), JsonError);
  EXPECT_THROW(bench_run_from_json(parse_json(R"({"schema": "1", "results": []})")), JsonError);
  EXPECT_THROW(bench_run_from_json(parse_json(R"({"schema": 1, "results": [{"workload": 3}]})")),
               JsonError);
  try {
    bench_run_from_json(parse_json(R"({"schema": 1, "results": [{"workload": "w"}]})"));
    FAIL() << "no exception";
  } catch (const JsonError& e) {
    EXPECT_NE(std::string(e.what()).find("impl"), std::string::npos) << e.what();
  }
}

// The ratio column compares evh with its peers only: a faster evh-epoll row is evh's own
// variant, not the best peer, and a run of evh's variants alone has no ratio.
TEST(BenchReport, EvhRatioIsToTheBestPeerNotToEvhVariants) {
  SuiteResult r;
  r.impls = {"evh", "evh-epoll", "raw", "libuv"};
  r.rows = {{"w", "evh", "rtt_p50_us", "us", {10, 10, 10, 1}},
            {"w", "evh-epoll", "rtt_p50_us", "us", {4, 4, 4, 1}},
            {"w", "raw", "rtt_p50_us", "us", {5, 5, 5, 1}},
            {"w", "libuv", "rtt_p50_us", "us", {8, 8, 8, 1}}};
  std::ostringstream md;
  write_markdown(md, r);
  EXPECT_NE(md.str().find("evh/best peer"), std::string::npos);
  EXPECT_NE(md.str().find("| 2.00 |"), std::string::npos) << md.str();  // 10 / raw's 5

  r.impls = {"evh", "evh-epoll"};
  r.rows.resize(2);
  std::ostringstream only_evh;
  write_markdown(only_evh, r);
  EXPECT_EQ(only_evh.str().find("evh/best peer"), std::string::npos) << only_evh.str();
}

}  // namespace
}  // namespace evh::bench
