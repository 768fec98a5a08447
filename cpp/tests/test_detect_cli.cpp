// gflv2-detect as a user runs it: the JSON it writes (read back and compared with the library's own detections),
// the drawn pictures, and every way it refuses: one "error:" line on stderr, exit 2, nothing detected before
// the outputs are known to be writable, never a partial or empty JSON, never an input overwritten.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "gflv2/detector.hpp"
#include "test_support.hpp"

namespace gflv2 {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out, err;
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string quoted(const std::string& arg) {
  std::string q = "'";
  for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class DetectCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::models_dir()) / ("cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    photos_ = testing::photos(2);
    ASSERT_EQ(photos_.size(), 2u);
  }

  CliRun run(const std::vector<std::string>& args) const {
    std::string command = quoted(GFLV2_DETECT_EXE);
    for (const std::string& a : args) command += " " + quoted(a);
    command += " > " + quoted((dir_ / "stdout").string()) + " 2> " + quoted((dir_ / "stderr").string());
    const int raw = std::system(command.c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_text(dir_ / "stdout"), read_text(dir_ / "stderr")};
  }

  // A refusal: exit 2, exactly one line on stderr starting "error:", and no picture detected.
  void expect_refused(const CliRun& r, const std::string& part) const {
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("detections"), std::string::npos) << "detected before refusing: " << r.out;
  }

  std::string model() const { return testing::model("tiny_prenms.onnx"); }

  fs::path dir_;
  std::vector<std::string> photos_;
};

TEST_F(DetectCli, JsonHoldsTheLibrarysDetectionsForEveryPicture) {
  const fs::path json = dir_ / "out" / "dets.json";  // a folder that does not exist yet is created
  const CliRun r = run({model(), photos_[0], photos_[1], "--threads", "2", "--json", json.string(), "--draw",
                     (dir_ / "drawn").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json report = nlohmann::json::parse(read_text(json));
  ASSERT_EQ(report["images"].size(), 2u);
  EXPECT_EQ(report["threads"], 2);
  DetectorOptions options;
  options.intra_op_threads = 1;
  Detector detector(model(), options);
  for (std::size_t i = 0; i < 2; ++i) {
    const nlohmann::json& entry = report["images"][i];
    EXPECT_EQ(entry["file"], photos_[i]);  // in input order, whatever thread ran it
    const cv::Mat photo = cv::imread(photos_[i], cv::IMREAD_COLOR);
    EXPECT_EQ(entry["width"], photo.cols);
    EXPECT_EQ(entry["height"], photo.rows);
    const Detections want = detector.detect(ImageView::bgr(photo.data, photo.rows, photo.cols, photo.step));
    ASSERT_EQ(entry["detections"].size(), want.size());
    ASSERT_GT(want.size(), 0u);
    for (std::size_t j = 0; j < want.size(); ++j) {
      const nlohmann::json& d = entry["detections"][j];
      EXPECT_EQ(d["score"].get<float>(), want[j].score);
      EXPECT_EQ(d["label"].get<int>(), want[j].label);
      EXPECT_EQ(d["box"][2].get<float>(), want[j].x2);
      EXPECT_EQ(d["class_name"], detector.class_names().at(want[j].label));
    }
    const cv::Mat drawn = cv::imread((dir_ / "drawn" / fs::path(photos_[i]).filename()).string());
    EXPECT_EQ(drawn.size(), photo.size());
  }
  EXPECT_NE(r.out.find("2 picture(s)"), std::string::npos) << r.out;
}

TEST_F(DetectCli, RefusesADrawPathThatIsAFileOrUnwritable) {
  std::ofstream(dir_ / "a_file") << "x";
  expect_refused(run({model(), photos_[0], "--draw", (dir_ / "a_file").string(), "--json", (dir_ / "d.json").string()}),
                 "is a file");
  EXPECT_FALSE(fs::exists(dir_ / "d.json"));
  expect_refused(run({model(), photos_[0], "--draw", (dir_ / "a_file" / "below").string()}), "not a folder");
  expect_refused(run({model(), photos_[0], "--draw", "/proc/gflv2_detect_test"}), "no file can be created");
}

TEST_F(DetectCli, RefusesAnUnwritableJsonBeforeDetecting) {
  expect_refused(run({model(), photos_[0], "--json", "/proc/gflv2_detect_test.json"}), "no file can be created");
  fs::create_directories(dir_ / "folder.json");
  expect_refused(run({model(), photos_[0], "--json", (dir_ / "folder.json").string()}), "is a folder");
  std::ofstream(dir_ / "a_file") << "x";
  expect_refused(run({model(), photos_[0], "--json", (dir_ / "a_file" / "d.json").string()}), "not a folder");
}

TEST_F(DetectCli, NeverDrawsOverAnInputPicture) {
  const fs::path photo = dir_ / "photo.jpg";
  fs::copy_file(photos_[0], photo);
  const std::string before = read_text(photo);
  expect_refused(run({model(), photo.string(), "--draw", dir_.string()}), "would overwrite the input picture");
  EXPECT_EQ(read_text(photo), before);
}

TEST_F(DetectCli, NonUtf8NamesAndBadPicturesStillGiveAFullJson) {
  const fs::path odd = dir_ / "caf\xe9.jpg";  // Latin-1 byte: not UTF-8
  fs::copy_file(photos_[0], odd);
  const std::string jpeg = read_text(photos_[1]);
  std::ofstream(dir_ / "cut.jpg", std::ios::binary) << jpeg.substr(0, jpeg.size() / 2);
  const fs::path json = dir_ / "dets.json";
  const CliRun r = run({model(), odd.string(), (dir_ / "cut.jpg").string(), (dir_ / "missing.jpg").string(), "--json",
                     json.string()});
  EXPECT_EQ(r.status, 1) << r.err;  // pictures failed: exit 1, their entries say why
  const nlohmann::json report = nlohmann::json::parse(read_text(json));
  ASSERT_EQ(report["images"].size(), 3u);
  EXPECT_NE(report["images"][0]["file"].get<std::string>().find("caf\xef\xbf\xbd.jpg"), std::string::npos);  // U+FFFD
  EXPECT_GT(report["images"][0]["detections"].size(), 0u);
  EXPECT_NE(report["images"][1]["error"].get<std::string>().find("truncated"), std::string::npos);  // as Python refuses it
  EXPECT_TRUE(report["images"][1]["detections"].empty());
  EXPECT_NE(report["images"][2]["error"].get<std::string>().find("no such picture file"), std::string::npos);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
  for (const auto& entry : fs::directory_iterator(dir_)) {  // the atomic write left no temporary file
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

TEST_F(DetectCli, UsageErrorsAreOneLine) {
  expect_refused(run({model(), photos_[0], "--bogus"}), "--bogus");
  expect_refused(run({model(), photos_[0], "--threads", "0"}), "--threads");
  expect_refused(run({testing::model("missing.onnx"), photos_[0], "--draw", (dir_ / "drawn").string()}), "missing.onnx");
  EXPECT_FALSE(fs::exists(dir_ / "drawn"));  // nothing created for a run that wrote nothing
  expect_refused(run({testing::model("tiny_newer_contract.onnx"), photos_[0]}), "upgrade the gflv2 runtime");
  expect_refused(run({model(), photos_[0], "--device", "cuda:abc"}), "cuda:abc");
  const CliRun help = run({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--json"), std::string::npos);
}

}  // namespace
}  // namespace gflv2
