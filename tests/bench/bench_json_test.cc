#include "bench_json.h"

#include <gtest/gtest.h>

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
  return r;
}

// What write_json writes, the reader reads back: every row, exactly (shortest round-trip
// numbers), with the run's size.
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

  const JsonValue doc = parse_json(out.str());
  EXPECT_EQ(doc.at("machine").at("cpu").string(), m.cpu);
  EXPECT_EQ(doc.at("machine").at("nproc").number(), 2);
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

// A parsed document written out by the generic writer parses to the same values.
TEST(BenchJson, GenericWriterRoundTrip) {
  const std::string text =
      R"({"a": [1, -2.5e-3, true, false, null, "\u00e9\ud83d\ude00"], "b": {"c": {}}, "d": []})";
  const JsonValue v = parse_json(text);
  std::ostringstream out;
  write_json_value(out, v);
  const JsonValue w = parse_json(out.str());
  EXPECT_EQ(w.at("a").array()[1].number(), -2.5e-3);
  EXPECT_TRUE(w.at("a").array()[2].boolean());
  EXPECT_TRUE(w.at("a").array()[4].is_null());
  EXPECT_EQ(w.at("a").array()[5].string(), "\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_TRUE(w.at("b").at("c").object().empty());
  EXPECT_TRUE(w.at("d").array().empty());
}

TEST(BenchJson, MalformedInputThrows) {
  EXPECT_THROW(parse_json("{"), JsonError);
  EXPECT_THROW(parse_json("{\"a\": 1,}"), JsonError);
  EXPECT_THROW(parse_json("[1] 2"), JsonError);
  EXPECT_THROW(parse_json("\"\x01\""), JsonError);
  EXPECT_THROW(parse_json("nul"), JsonError);
}

}  // namespace
}  // namespace evh::bench
