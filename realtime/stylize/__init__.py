"""`realtime stylize`: files and stream URLs.

- file: images and video files (frame count, frame rate and audio kept);
- url: stream inputs and outputs (rtsp/rtmp/srt/udp/http), newest frame wins, reconnects;
- media: the audio/video helpers both use; progress: the progress bar or log line.
"""
