#!/bin/bash
# Build the minimal, statically linked ffmpeg + ffprobe that `mer convert` and the convert benchmark
# need, for a machine that has no ffmpeg and cannot install one (the 16-core figures in
# benchmarks/README.md were measured with it). Debian 12: needs deb-src entries, libx264-dev, nasm.
#
#   bash benchmarks/build_minimal_ffmpeg.sh OUT/        # then: PATH=OUT/bin:$PATH
#
# It is Debian's own ffmpeg 5.1 source with Debian's libx264 linked in statically, so its clips are
# byte-identical to the packaged ffmpeg's (checked with -fflags +bitexact); glibc stays dynamic, so
# the binaries run on any x86-64 Linux with glibc >= the build machine's. 12 MB each, against the
# ~230 MB of shared libraries the packaged ffmpeg loads (which also costs ~90 ms per process start).
set -euo pipefail
out=$(realpath -m "${1:?usage: build_minimal_ffmpeg.sh OUT/}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source --download-only ffmpeg >/dev/null
tar xf ffmpeg_*.orig.tar.xz
mkdir x264 && ln -s /usr/lib/x86_64-linux-gnu/libx264.a x264/libx264.a  # only the .a: links it statically
cd ffmpeg-*/
./configure --prefix="$out" --disable-everything --disable-autodetect --disable-doc --disable-network \
  --disable-debug --disable-ffplay --enable-gpl --enable-libx264 --extra-ldflags="-L$work/x264" \
  --extra-libs="-lpthread -lm -ldl" \
  --enable-encoder=libx264,flac,mpeg4,pcm_s16le,rawvideo,aac,mjpeg,wrapped_avframe \
  --enable-decoder=mpeg4,h264,pcm_s16le,pcm_f32le,flac,rawvideo,aac,mjpeg \
  --enable-muxer=mp4,mov,segment,avi,wav,flac,rawvideo,null,image2,image2pipe,adts,matroska \
  --enable-demuxer=avi,mov,wav,flac,rawvideo,image2,image2pipe,aac,matroska,h264,concat \
  --enable-parser=mpeg4video,h264,flac,aac,mjpeg --enable-bsfs --enable-protocol=file,pipe,concat \
  --enable-indev=lavfi --enable-filters --enable-swscale --enable-swresample >/dev/null
make -j"$(nproc)" >/dev/null
make install >/dev/null
strip "$out/bin/ffmpeg" "$out/bin/ffprobe"
"$out/bin/ffmpeg" -hide_banner -version | head -1
