// CommClock: a wait is booked under its site and in the total; since() gives one step's waits.
#include "tsp/parallel/comm_clock.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

namespace tsp::parallel {
namespace {

TEST(CommClock, BooksEachWaitUnderItsSiteAndTheTotal) {
  CommClock clock;
  { ScopedCommWait w(&clock, CommSite::kv_gather); std::this_thread::sleep_for(std::chrono::milliseconds(2)); }
  const CommClock before = clock;
  { ScopedCommWait w(&clock, CommSite::grad_reduce); std::this_thread::sleep_for(std::chrono::milliseconds(3)); }
  { ScopedCommWait w(&clock); }  // default site: other
  EXPECT_GE(clock.by_site[static_cast<int>(CommSite::kv_gather)], 2e-3);
  EXPECT_GE(clock.by_site[static_cast<int>(CommSite::grad_reduce)], 3e-3);
  EXPECT_EQ(clock.by_site[static_cast<int>(CommSite::weight_fetch)], 0.0);
  double sum = 0;
  for (double s : clock.by_site) sum += s;
  EXPECT_DOUBLE_EQ(sum, clock.seconds);
  const CommClock step = clock.since(before);
  EXPECT_EQ(step.by_site[static_cast<int>(CommSite::kv_gather)], 0.0);
  EXPECT_EQ(step.by_site[static_cast<int>(CommSite::grad_reduce)],
            clock.by_site[static_cast<int>(CommSite::grad_reduce)]);
  EXPECT_NEAR(step.seconds, clock.seconds - before.seconds, 1e-12);
  ScopedCommWait nothing(nullptr, CommSite::vocab);  // a null clock is allowed and books nothing
}

TEST(CommClock, EverySiteHasItsOwnName) {
  std::set<std::string> names;
  for (int i = 0; i < kNumCommSites; ++i) names.insert(std::string(comm_site_name(static_cast<CommSite>(i))));
  EXPECT_EQ(names.size(), static_cast<size_t>(kNumCommSites));
  EXPECT_EQ(names.count("?"), 0u);
}

}  // namespace
}  // namespace tsp::parallel
