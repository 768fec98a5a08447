#!/usr/bin/env bash
# A small static OpenCV for the wheel's native parts: core, imgproc and imgcodecs with their own libjpeg-turbo,
# libpng and zlib, no other codec, no GUI, no video. Linked into libgflv2.so and gflv2-detect with hidden symbols,
# so the wheel needs no OpenCV (nor GDAL, TIFF, ...) on the user's machine: Debian's shared OpenCV pulls in
# ~100 libraries that auditwheel would have to copy.
#
#   bash scripts/build_opencv_static.sh      prints the install prefix (cached: built once per version)
#
# Source: the OpenCV tree inside the opencv-python-headless sdist of the version the Python package pins
# (constraints.txt), so the C++ and Python sides decode and resize with the same OpenCV.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=5.0.0.93
SHA256=b82f9831daab90b725c7c1ee1b36cb5732c367096ac76d119e64e14eb70d5f3c
URL="https://files.pythonhosted.org/packages/1d/99/76b7c80252aa83c1af16393454aafd125a0287101afe8deb0a6821af0e30/opencv_python_headless-$VERSION.tar.gz"
JOBS=${JOBS:-$(nproc)}
recipe=$(sha256sum "$0" | cut -c1-12)  # a changed recipe is a new cache entry
prefix="${GFLV2_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gflv2-deploy}/opencv-static-$VERSION-$recipe"
if [ -f "$prefix/.complete" ]; then echo "$prefix"; exit 0; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gflv2-opencv.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build_opencv_static: downloading opencv-python-headless $VERSION (sdist)" >&2
python3 - "$URL" "$SHA256" "$work/src.tar.gz" <<'PY'
import hashlib, sys, urllib.request
url, sha, out = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=300).read()
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"build_opencv_static: {url}: SHA-256 mismatch")
open(out, "wb").write(data)
PY
tar -xzf "$work/src.tar.gz" -C "$work" --wildcards "*/opencv/*"
src=$(ls -d "$work"/opencv*python*/opencv)
echo "build_opencv_static: building core, imgproc, imgcodecs (static, about 10 minutes on 2 cores)" >&2
off=(WITH_TIFF WITH_WEBP WITH_OPENJPEG WITH_JASPER WITH_OPENEXR WITH_IMGCODEC_HDR WITH_IMGCODEC_SUNRASTER
     WITH_IMGCODEC_PXM WITH_IMGCODEC_PFM WITH_AVIF WITH_JPEGXL WITH_GDAL WITH_GDCM WITH_SPNG WITH_OPENCL WITH_IPP
     WITH_ITT WITH_LAPACK WITH_EIGEN WITH_PROTOBUF WITH_FFMPEG WITH_GSTREAMER WITH_V4L WITH_GTK WITH_QT WITH_VA
     WITH_VA_INTEL WITH_1394 WITH_OPENVX WITH_CUDA WITH_OPENGL WITH_TBB WITH_OPENMP WITH_HALIDE WITH_VULKAN WITH_ZLIB_NG
     BUILD_TESTS BUILD_PERF_TESTS BUILD_EXAMPLES BUILD_DOCS BUILD_opencv_apps BUILD_JAVA BUILD_opencv_python3
     BUILD_opencv_python2 BUILD_PROTOBUF BUILD_ITT BUILD_IPP_IW BUILD_OPENJPEG BUILD_TIFF BUILD_WEBP BUILD_OPENEXR
     BUILD_SHARED_LIBS OPENCV_GENERATE_PKGCONFIG)
args=(); for o in "${off[@]}"; do args+=("-D$o=OFF"); done
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix.partial" \
  -DBUILD_LIST=core,imgproc,imgcodecs -DWITH_JPEG=ON -DBUILD_JPEG=ON -DWITH_PNG=ON -DBUILD_PNG=ON -DBUILD_ZLIB=ON \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_CXX_VISIBILITY_PRESET=hidden -DCMAKE_C_VISIBILITY_PRESET=hidden \
  -DCMAKE_VISIBILITY_INLINES_HIDDEN=ON -DCPU_BASELINE=SSE3 -DCPU_DISPATCH=AVX2 -DOPENCV_SKIP_PYTHON_LOADER=ON \
  "${args[@]}" > "$work/configure.log" 2>&1 || { tail -40 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" -j "$JOBS" > "$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
rm -rf "$prefix.partial"
cmake --install "$work/build" > /dev/null
cp "$src/LICENSE" "$prefix.partial/share/licenses/opencv5/opencv-LICENSE"  # the 3rd-party ones are there already
touch "$prefix.partial/.complete"
rm -rf "$prefix" && mv "$prefix.partial" "$prefix"
echo "$prefix"
